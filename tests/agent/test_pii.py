"""Personal data never survives redaction; clinical words always do."""

from __future__ import annotations

import pytest

from agent.pii import redact

PERSONAL = [
    ("My name is John Smith and I have a rash.", "John Smith", "<NAME>"),
    ("Hi, this is Maria Gonzalez calling about my mole.", "Maria Gonzalez", "<NAME>"),
    ("my name is anna and it itches", "anna", "<NAME>"),
    ("You can call me on 07700 900123.", "07700 900123", "<PHONE>"),
    ("My cell is (415) 555-0132.", "555-0132", "<PHONE>"),
    ("Email me at j.smith@example.com please.", "j.smith@example.com", "<EMAIL>"),
    ("I was born on 3 March 1985.", "1985", "<DATE_OF_BIRTH>"),
    ("My date of birth is 12/04/1990.", "12/04/1990", "<DATE_OF_BIRTH>"),
    ("I live at 42 Elm Street.", "42 Elm Street", "<ADDRESS>"),
    ("My postcode is SW1A 1AA.", "SW1A 1AA", "<ADDRESS>"),
    ("My NHS number is 943 476 5919.", "943 476 5919", "<ID_NUMBER>"),
    ("My insurance ID is AB 1234567.", "1234567", "<ID_NUMBER>"),
    ("My social security number is 123-45-6789.", "123-45-6789", None),
]


@pytest.mark.parametrize(("text", "secret", "placeholder"), PERSONAL)
def test_personal_data_is_replaced_by_a_typed_placeholder(
    text: str, secret: str, placeholder: str | None
) -> None:
    redacted = redact(text)
    assert secret.lower() not in redacted.lower()
    if placeholder:
        assert placeholder in redacted


@pytest.mark.parametrize(
    "text",
    [
        "It started about two weeks ago and it is 2 centimetres wide.",
        "This is a rash on my left forearm.",
        "I have had it since March 2024.",
        "I'm worried about a mole that is bleeding.",
        "I'm 34 years old and I burn easily.",
        "The mole is 6 millimetres across and has three colours.",
        "I took 2 tablets of ibuprofen yesterday.",
    ],
)
def test_clinical_words_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_redaction_on_empty_text_is_a_no_op() -> None:
    assert redact("") == ""
