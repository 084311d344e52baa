"""Asking when unsure, and never carrying on as if the agent had heard."""

from __future__ import annotations

from agent.clarify import AskKind, Understanding, confirmation
from agent.facts import extract_facts


def test_an_unsure_clinical_turn_is_confirmed_in_plain_words() -> None:
    ask = confirmation(extract_facts("my throat feels tight and I have a rash"))
    assert ask is not None and ask.kind == AskKind.CONFIRM
    assert "did you say something about" in ask.text.lower() and "a rash" in ask.text


def test_an_unsure_turn_with_nothing_clinical_is_not_confirmed() -> None:
    assert confirmation(extract_facts("thanks, that's good to know")) is None


def test_not_understood_twice_offers_a_clinician_and_a_third_time_hands_over() -> None:
    understanding = Understanding()
    assert understanding.unclear().kind == AskKind.REPEAT
    assert understanding.unclear().kind == AskKind.OFFER_CLINICIAN
    assert understanding.unclear() is None  # the caller escalates


def test_yes_to_the_offer_accepts_it_and_a_clear_turn_starts_over() -> None:
    understanding = Understanding()
    understanding.unclear()
    understanding.unclear()
    assert understanding.understood("Yes please, I'd like that.")
    understanding.unclear()
    assert not understanding.understood("It's on my arm.")
    assert understanding.unclear_in_a_row == 0
