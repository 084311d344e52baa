"""A second red-flag detector that does not depend on exact words: meaning, not phrases.

The rules (``agent/red_flags.yaml``) escalate on findings the lexicon recognises. A patient
who says a red flag in words the lexicon does not know ("my little one's gone all blotchy
and won't wake properly") slips past them. This detector compares each sentence the patient
says with the rules' own example sentences (the prototypes) in a sentence-embedding space
(all-MiniLM-L6-v2, already in the stack for retrieval); a sentence close enough to a
prototype of an escalating rule escalates at that rule's level, even when no rule matched.

The threshold is calibrated on benign speech (``python -m agent.semantic_flags --calibrate``
writes ``agent/semantic_flags.yaml``): it sits above the closest any benign, look-alike or
negated statement of the development data comes to a prototype. Embeddings do not read
negation well ("no trouble breathing" is close to "trouble breathing"), so a match is dropped
when the sentence itself denies a finding the rule is made of.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from agent.facts import Presence, extract_facts
from agent.policy import Policy, Rule, Urgency

CALIBRATION_FILE = Path(__file__).with_name("semantic_flags.yaml")
SENTENCE = re.compile(r"(?<=[.!?;])\s+|\s+(?:and|but)\s+(?=i |my |it |the |he |she |there )", re.IGNORECASE)

Encode = Callable[[list[str]], np.ndarray]  # texts -> L2-normalised rows


@dataclass(frozen=True)
class PrototypeMatch:
    """A patient sentence close in meaning to an escalating rule's example."""

    rule_id: str
    level: Urgency
    says: str
    similarity: float
    sentence: str


def sentences(text: str) -> list[str]:
    """The pieces of a turn compared one by one (a long turn dilutes its one alarming clause)."""
    parts = [p.strip(" ,.") for p in SENTENCE.split(text) if p and p.strip(" ,.")]
    return [p for p in parts if len(p.split()) >= 3]


def escalating_rules(policy: Policy) -> list[Rule]:
    return [rule for rule in policy.rules if rule.level.rank <= policy.escalate_from.rank and rule.examples]


def load_threshold(path: Path = CALIBRATION_FILE) -> float:
    return float(yaml.safe_load(path.read_text())["threshold"])


class SemanticRedFlags:
    """Nearest escalating-rule prototype for each sentence of a patient turn."""

    def __init__(self, encode: Encode, policy: Policy, threshold: float | None = None) -> None:
        self._encode = encode
        self._threshold = load_threshold() if threshold is None else threshold
        self._prototypes = [(rule, example) for rule in escalating_rules(policy) for example in rule.examples]
        self._vectors = encode([example for _rule, example in self._prototypes])

    @property
    def threshold(self) -> float:
        return self._threshold

    def best(self, sentence: str) -> tuple[Rule, float]:
        """The closest prototype's rule and its cosine similarity (for calibration)."""
        scores = self._vectors @ self._encode([sentence])[0]
        index = int(np.argmax(scores))
        return self._prototypes[index][0], float(scores[index])

    def detect(self, text: str) -> PrototypeMatch | None:
        """The most urgent prototype match of the turn, or None."""
        pieces = sentences(text)
        if not pieces:
            return None
        scores = self._encode(pieces) @ self._vectors.T  # sentences x prototypes
        matches = []
        for row, sentence in zip(scores, pieces, strict=True):
            for index in np.flatnonzero(row >= self._threshold):
                rule = self._prototypes[index][0]
                if not _denied(rule, sentence):
                    matches.append(
                        PrototypeMatch(rule.id, rule.level, rule.says, float(row[index]), sentence)
                    )
        if not matches:
            return None
        return min(matches, key=lambda m: (m.level.rank, -m.similarity))


def _denied(rule: Rule, sentence: str) -> bool:
    """The sentence says one of the rule's findings is absent ("no fever", "it isn't bleeding")."""
    facts = extract_facts(sentence)
    named = set().union(*rule.when)
    return any(facts.findings.get(fid) == Presence.ABSENT for fid in named)


def calibrate(
    detector: SemanticRedFlags, benign: Iterable[str], red_flags: Iterable[str], margin: float = 0.02
) -> dict[str, float | int]:
    """The threshold just above the closest benign sentence, and what it catches of the red flags."""
    benign_scores = [detector.best(s)[1] for text in benign for s in sentences(text)]
    threshold = round(max(benign_scores) + margin, 3)
    flagged = list(red_flags)
    caught = sum(any(detector.best(s)[1] >= threshold for s in sentences(text)) for text in flagged)
    return {
        "threshold": threshold,
        "benign_sentences": len(benign_scores),
        "max_benign_similarity": round(max(benign_scores), 3),
        "red_flag_turns": len(flagged),
        "red_flag_turns_over_threshold": caught,
    }
