"""The language guard: no certain diagnosis, no prescribing, no discouraging care."""

from __future__ import annotations

import pytest

from agent.language_guard import guard


@pytest.mark.parametrize(
    "sentence", ["You have eczema.", "This is definitely melanoma.", "I can confirm you have psoriasis."]
)
def test_a_certain_diagnosis_becomes_a_possibility(sentence: str) -> None:
    result = guard(sentence)
    assert "might be" in result.text and "clinician" in result.text
    assert result.changes


@pytest.mark.parametrize(
    "sentence",
    [
        "Take 400 mg of ibuprofen three times a day.",
        "You should take antibiotics.",
        "Apply hydrocortisone cream twice a day.",
        "Stop taking your tablets.",
    ],
)
def test_prescribing_or_dosing_is_replaced(sentence: str) -> None:
    assert guard(sentence).text == "A clinician or pharmacist can advise you on treatment."


@pytest.mark.parametrize(
    "sentence",
    ["You don't need to see a doctor.", "There is nothing to worry about.", "No need to see a GP for this."],
)
def test_discouraging_care_is_replaced(sentence: str) -> None:
    assert "please see a clinician" in guard(sentence).text


@pytest.mark.parametrize(
    "sentence",
    [
        "Where on your body is it?",
        "It could be eczema; a clinician should check.",
        "Are you taking any new medication?",
        "Keep the area clean and moisturised.",
        "You have a rash on your arm.",
    ],
)
def test_safe_sentences_pass_unchanged(sentence: str) -> None:
    result = guard(sentence)
    assert result.text == sentence and not result.changes
