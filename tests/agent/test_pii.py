"""Personal data never survives redaction; clinical words always do."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.pii import find_pii, redact

CASES = yaml.safe_load((Path(__file__).parent / "data" / "redaction_cases.yaml").read_text())

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
    # spoken forms: each has its own placeholder
    ("I'm john smith and my mole is bleeding", "john smith", "<NAME>"),
    ("my number is five five five, one two three, four five six seven", "five five five", "<PHONE>"),
    ("my email is jane dot doe at gmail dot com", "jane dot doe", "<EMAIL>"),
    ("I was born on the third of March nineteen eighty", "nineteen eighty", "<DATE_OF_BIRTH>"),
    ("I live in Springfield", "Springfield", "<ADDRESS>"),
    ("my member ID is XJH4567 8821", "XJH4567 8821", "<ID_NUMBER>"),
    ("I'm at forty-two Mill Road", "forty-two Mill Road", "<ADDRESS>"),
    ("My member number is B-K-R four four nine, one seven two.", "four four nine", "<ID_NUMBER>"),
    ("I'm ringing about my lad, Kieran Doyle, he's fifteen", "Kieran Doyle", "<NAME>"),
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


def test_the_case_file_covers_both_directions() -> None:
    assert len(CASES["keep"]) >= 124
    assert len(CASES["redact"]) >= 116


@pytest.mark.parametrize("text", CASES["keep"])
def test_what_patients_say_about_their_health_survives_unchanged(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize("case", CASES["redact"], ids=[case["text"][:50] for case in CASES["redact"]])
def test_what_identifies_a_patient_is_gone_and_their_symptoms_stay(case: dict) -> None:
    redacted = redact(case["text"])
    for secret in case["secrets"]:
        assert str(secret).lower() not in redacted.lower(), redacted
    for kept in case.get("keep", []):
        assert kept in redacted, redacted


def test_an_accented_name_is_replaced_whole() -> None:
    assert redact("My name is José García and it itches") == "My name is <NAME> and it itches"


def test_a_name_said_twice_is_replaced_both_times() -> None:
    assert redact("I'm Sarah, and Sarah's arm is the one with the rash") == (
        "I'm <NAME>, and <NAME>'s arm is the one with the rash"
    )


def test_find_pii_gives_the_entity_and_where_it_is() -> None:
    text = "I'm John Smith, call me on 07700 900123"
    found = {(entity, text[start:end]) for entity, start, end in find_pii(text)}
    assert ("PERSON", "John Smith") in found
    assert any(entity == "PHONE_NUMBER" and "900123" in span for entity, span in found)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("We're at nine Oakfield Crescent.", "We're at <ADDRESS>."),
        ("I live at 42 Elm St. and it itches", "I live at <ADDRESS> and it itches"),
        (
            "My member number's H-L-P two two eight, zero four one, in case you need it.",
            "My member number's <ID_NUMBER>, in case you need it.",
        ),
        (
            "I'm a nurse myself, Yetunde Okafor, I work nights",
            "I'm a nurse myself, <NAME>, I work nights",
        ),
        (
            "My little girl, Isla Mackenzie, she's four, and Isla's rash is pinky",
            "My little girl, <NAME>, she's four, and <NAME>'s rash is pinky",
        ),
    ],
)
def test_spoken_streets_spelled_ids_and_names_in_commas_are_cut_exactly(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the name whole when its accents are typed as combining marks (NFD), not "<NAME>\u0301 ..."
        ("My name is Jose\u0301 Garci\u0301a and it itches", "My name is <NAME> and it itches"),
        ("mrs o'brien here, it's about my rash", "mrs <NAME> here, it's about my rash"),
        ("Our son Lucas has a rash", "Our son <NAME> has a rash"),
        # the user name said before "at", back to "it's", and a service named without its ".com"
        ("it's jane dot doe eighty five at gmail dot com", "it's <EMAIL>"),
        ("my email is jane dot doe at gmail, I'm pregnant", "my email is <EMAIL>, I'm pregnant"),
        # a full date said on its own is the answer to "your date of birth?"; with what happened, it stays
        ("Yes. 14th of March 1985.", "Yes. <DATE_OF_BIRTH>."),
        ("It started on the 3rd of March 2024.", "It started on the 3rd of March 2024."),
        (
            "DOB fourteen three eighty five, the rash started yesterday",
            "DOB <DATE_OF_BIRTH>, the rash started yesterday",
        ),
        ("member id is xkd 4471 9920", "member id is <ID_NUMBER>"),
        ("MR 00123456 is on my letter", "<ID_NUMBER> is on my letter"),
        ("In my case, in 2019 I had a melanoma removed.", "In my case, in 2019 I had a melanoma removed."),
        # a place with its state, and place words that are everyday words ("New", "City")
        (
            "I live in Springfield, Illinois, and my mole is bleeding",
            "I live in <ADDRESS>, and my mole is bleeding",
        ),
        ("we live in New York City and it's spreading", "we live in <ADDRESS> and it's spreading"),
        ("I'm from St. Albans, the mole is new", "I'm from <ADDRESS>, the mole is new"),
    ],
)
def test_spoken_mail_dates_ids_and_places_are_cut_exactly(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_servers_own_address_stays_in_a_log_line_and_a_callers_address_does_not() -> None:
    assert redact("Uvicorn running on http://127.0.0.1:8000") == "Uvicorn running on http://127.0.0.1:8000"
    assert redact("SIP bridge ready on 0.0.0.0:5060") == "SIP bridge ready on 0.0.0.0:5060"
    assert "203.0.113.7" not in redact("call from 203.0.113.7 refused")
