"""Words that leave a patient's sentence open: a pause after them is not the end of the turn."""

from __future__ import annotations

import pytest

from pipeline.unfinished_words import sounds_unfinished


@pytest.mark.parametrize(
    "heard",
    [
        "It's on my.",  # Whisper closes a fragment with a full stop
        "It gets worse when I.",
        "The patch is slightly raised and",
        "Um.",
        "It is itchy,",
        "It began on my elbow and then",
        "I tried some of the",
        "It\u2019s on my",
        "I put some cream on it...",
    ],
)
def test_a_phrase_stopping_on_an_open_word_or_mark_is_unfinished(heard: str) -> None:
    assert sounds_unfinished(heard)


@pytest.mark.parametrize(
    "heard",
    [
        "It started two weeks ago.",
        "No, it does not hurt.",
        "I think so.",
        "Yes, it is.",
        "Yes I do.",
        "It's on my arm",
        "",
    ],
)
def test_a_finished_answer_is_not_held_open(heard: str) -> None:
    assert not sounds_unfinished(heard)
