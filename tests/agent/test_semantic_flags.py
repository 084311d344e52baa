"""Red flags by meaning: close to an escalating rule's examples, unless the sentence denies it."""

from __future__ import annotations

import numpy as np

from agent.policy import Urgency, default_policy
from agent.semantic_flags import SemanticRedFlags, calibrate, load_threshold, sentences


class WordEncoder:
    """A stand-in sentence encoder: bag of words, L2-normalised (the real one is MiniLM)."""

    def __init__(self) -> None:
        self.vocabulary: dict[str, int] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            vector = np.zeros(4096, dtype=np.float32)
            for word in text.lower().replace(".", " ").replace(",", " ").split():
                vector[self.vocabulary.setdefault(word, len(self.vocabulary))] += 1.0
            rows.append(vector / (np.linalg.norm(vector) or 1.0))
        return np.stack(rows)


def detector(threshold: float = 0.9) -> SemanticRedFlags:
    return SemanticRedFlags(WordEncoder(), default_policy(), threshold=threshold)


def test_a_sentence_like_an_emergency_example_escalates_at_that_rules_level() -> None:
    match = detector().detect("Well. My lips and tongue are swelling up after I ate some nuts.")
    assert match is not None
    assert match.rule_id == "airway_swelling" and match.level == Urgency.EMERGENCY


def test_a_sentence_that_denies_the_rules_finding_does_not_escalate() -> None:
    assert detector(0.5).detect("I don't have hives and I'm not finding it hard to breathe.") is None


def test_nothing_close_to_any_example_is_no_match() -> None:
    assert detector().detect("I would like advice about dandruff shampoo for my scalp.") is None


def test_calibration_puts_the_threshold_above_every_benign_sentence() -> None:
    found = calibrate(
        detector(1.0),
        benign=["I have acne on my chin.", "My eczema is itchy in winter."],
        red_flags=["My lips and tongue are swelling up after I ate some nuts."],
    )
    assert found["threshold"] > found["max_benign_similarity"]
    assert found["red_flag_turns_over_threshold"] == 1


def test_turns_are_compared_clause_by_clause() -> None:
    assert sentences("It started on Monday. And now my throat feels tight, it's scary") == [
        "It started on Monday",
        "And now my throat feels tight, it's scary",
    ]


def test_the_reviewed_threshold_is_a_similarity() -> None:
    assert 0.5 < load_threshold() < 1.0
