"""The simulated patient: its own words first, then answers to what the agent asks."""

from __future__ import annotations

from agent.simulator import SimulatedPatient


def patient() -> SimulatedPatient:
    return SimulatedPatient(
        ("I've got a rash.", "It's really itchy."),
        {"site": "On my left arm.", "duration": "About two weeks."},
    )


def test_says_its_own_words_in_order_then_answers_the_question_asked() -> None:
    p = patient()
    assert p.first() == "I've got a rash."
    assert p.reply("Thank you. Where on your body is it?") == "It's really itchy."
    assert p.reply("How long have you had it?") == "About two weeks."
    assert p.reply("Where on your body is it?") == "On my left arm."
    assert p.reply("Does it itch, hurt, burn or bleed?") == "I'm not sure, sorry."


def test_repeats_itself_when_asked_and_restates_when_asked_to_confirm() -> None:
    p = patient()
    p.first()
    assert p.reply("I'm sorry, I didn't catch that. Could you say that again?") == "I've got a rash."
    assert p.reply("Did you say something about a rash?") == "Yes, I said: I've got a rash."
    assert p.reply("Did you say something about a rash?") == "Yes, I said: I've got a rash."


def test_accepts_an_offered_clinician_and_stops_when_nothing_is_asked() -> None:
    p = patient()
    p.first()
    assert p.reply("Would you like me to connect you with a clinician? Just say yes.") == "Yes please."
    p.reply("")
    assert p.reply("Here is a summary of what you told me.") is None


def test_after_an_escalation_only_its_own_remaining_words_are_said() -> None:
    p = patient()
    p.first()
    assert p.reply("Where on your body is it?", escalated=True) == "It's really itchy."
    assert p.reply("How long have you had it?", escalated=True) is None
