"""Clinical facts from the patient's words: negation, hedges, and the details of the history."""

from __future__ import annotations

import pytest

from agent.facts import ClinicalFacts, Presence, extract_facts


@pytest.mark.parametrize(
    ("text", "finding"),
    [
        ("No fever.", "fever"),
        ("It isn't bleeding.", "bleeding"),
        ("I don't think it has changed.", "changing"),
        ("I haven't had a fever.", "fever"),
        ("It doesn't itch at all.", "itching"),
        ("There's no swelling.", "swelling"),
        ("My temperature is normal.", "fever"),
        ("My breathing is fine.", "breathing_difficulty"),
    ],
)
def test_a_denied_sign_is_recorded_as_absent_not_present(text: str, finding: str) -> None:
    facts = extract_facts(text)
    assert facts.absent(finding)
    assert not facts.present(finding)


@pytest.mark.parametrize(
    ("text", "finding"),
    [
        ("I'm not sure if it's bleeding.", "bleeding"),  # a hedge is not a denial
        ("I can't breathe properly.", "breathing_difficulty"),  # the negation is part of the sign
        ("The sore won't heal.", "not_healing"),
        ("I don't have a fever and the mole is bleeding.", "bleeding"),  # a new clause ends the negation
        ("No fever, but it's bleeding a bit.", "bleeding"),
    ],
)
def test_hedges_and_signs_that_contain_a_negation_still_count(text: str, finding: str) -> None:
    assert extract_facts(text).present(finding)


def test_a_sign_once_reported_stays_reported() -> None:
    facts = extract_facts("It bled last week.")
    extract_facts("It isn't bleeding now.", into=facts)
    assert facts.present("bleeding")


def test_a_new_mole_is_a_mole_and_new() -> None:
    facts = extract_facts("I noticed a new mole on my leg.")
    assert facts.present("pigmented_lesion") and facts.present("new_lesion")


def test_site_duration_age_skin_type_and_treatments_are_read() -> None:
    facts = ClinicalFacts()
    for text in (
        "I have a red itchy rash on my left forearm.",
        "It started about two weeks ago.",
        "I'm 34 years old and my skin usually burns in the sun.",
        "I tried some moisturiser but it did not help.",
    ):
        extract_facts(text, into=facts)
    assert facts.body_sites == ["arm"] and facts.site_words == ["left forearm"]
    assert facts.duration == "ONE_TO_FOUR_WEEKS"
    assert facts.age_years == 34
    assert facts.skin_type == "FST2"
    assert facts.tried == ["some moisturiser"]
    assert facts.present("rash") and facts.present("itching") and facts.present("redness")


@pytest.mark.parametrize(
    ("text", "person"),
    [("My baby is 6 weeks old.", "infant"), ("My son is 3 years old.", "child"), ("I am 82.", "older_adult")],
)
def test_who_is_affected_is_read_from_their_age(text: str, person: str) -> None:
    assert extract_facts(text).present(person)


def test_the_summary_keeps_what_was_said_and_what_was_denied() -> None:
    facts = extract_facts("There is a mole on my back that is getting bigger, no fever.")
    summary = facts.summary()
    assert "a mole or dark spot" in summary
    assert "getting bigger" in summary
    assert "denies: fever" in summary
    assert facts.findings["fever"] == Presence.ABSENT
