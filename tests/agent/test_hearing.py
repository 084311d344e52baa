"""Reading by sound: the red-flag words speech recognition writes as other words."""

from __future__ import annotations

import pytest

from agent.facts import extract_facts
from agent.hearing import as_keywords, close, red_flag_words, sounds_like
from agent.policy import assess


@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        ("soars", "sores"),  # the same sounds
        ("lamp", "lump"),  # one vowel
        ("pot", "spot"),  # one sound fewer at the start
        ("mull", "mole"),
        ("favour", "fever"),
    ],
)
def test_a_misheard_red_flag_word_is_read_as_the_word_it_sounds_like(heard: str, meant: str) -> None:
    assert sounds_like(heard) == meant


@pytest.mark.parametrize(
    "word",
    ["been", "more", "people", "called", "stung", "leading", "last", "fades", "the", "or", "rash", "itchy"],
)
def test_everyday_words_inflections_and_keywords_themselves_are_read_as_said(word: str) -> None:
    assert sounds_like(word) is None


def test_an_inflection_at_the_end_is_not_a_mishearing() -> None:
    assert not close(("F", "EY", "D", "Z"), ("F", "EY", "D"))
    assert close(("P", "AA", "T"), ("S", "P", "AA", "T"))


@pytest.mark.parametrize(
    "transcript",
    [
        "I've got soars on my lip that won't heal.",
        "There's a lamp on my neck that has doubled in size in two weeks.",
        "The pot on my arm has started bleeding.",
    ],
)
def test_the_sound_alike_reading_meets_the_red_flag_the_transcript_hid(transcript: str) -> None:
    assert not assess(extract_facts(transcript)).escalate
    reading = as_keywords(transcript)
    assert reading is not None
    assert assess(extract_facts(reading)).escalate


def test_a_transcript_with_no_sound_alike_has_no_second_reading() -> None:
    assert as_keywords("I have an itchy rash on my arm.") is None


def test_red_flag_words_lists_the_keywords_written() -> None:
    assert red_flag_words("A Mole that is bleeding, and a rash.") == ["mole", "bleeding", "rash"]


@pytest.mark.parametrize(
    ("heard", "meant"), [("blistern", "blister"), ("swolen", "swollen"), ("pregnent", "pregnant")]
)
def test_a_non_word_one_letter_off_a_long_keyword_is_read_as_it(heard: str, meant: str) -> None:
    assert sounds_like(heard) == meant
