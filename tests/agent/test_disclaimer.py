"""The disclaimer: in every greeting, on assessments, never so often that it is noise."""

from __future__ import annotations

from agent.disclaimer import FULL, SHORT, DisclaimerPolicy


def test_the_first_words_of_a_session_get_the_full_disclaimer() -> None:
    assert DisclaimerPolicy().disclaimer_for("Hello, what brings you here?") == FULL


def test_a_greeting_that_already_carries_it_gets_nothing_more() -> None:
    policy = DisclaimerPolicy()
    assert policy.disclaimer_for("I give information, not a diagnosis.") == ""


def test_questions_do_not_get_it_and_assessments_get_it_when_due() -> None:
    policy = DisclaimerPolicy(every_turns=3)
    policy.disclaimer_for("Hello.")  # the greeting
    assert policy.disclaimer_for("Where is it?") == ""
    assert policy.disclaimer_for("It could be eczema.") == ""  # only one turn since the last
    assert policy.disclaimer_for("How long have you had it?") == ""
    assert policy.disclaimer_for("It might be an infection.") == SHORT


def test_recommendations_carry_it_but_not_twice_in_a_row() -> None:
    policy = DisclaimerPolicy(every_turns=5)
    policy.disclaimer_for("Hello.")
    policy.disclaimer_for("Where is it?")
    assert policy.disclaimer_for("I'd recommend an appointment.") == SHORT
    assert policy.disclaimer_for("I'd recommend an appointment soon.") == ""
