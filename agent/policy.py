"""The triage policy: clinical facts in, an urgency level with its reasons out.

The rules are data (``agent/red_flags.yaml``); this module only applies them. A rule matches
when every line of its ``when`` has at least one finding present and none of ``unless`` is
present; the most urgent matching rule sets the level. Levels at or above the file's
``escalate_from`` escalate to a clinician.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

import yaml

from agent.facts import ClinicalFacts, findings_catalogue, site_ids

RULES_FILE = Path(__file__).with_name("red_flags.yaml")
# Findings that come from evidence rather than words (set by the pipeline, not the lexicon).
EVIDENCE_FINDINGS = {"retrieval_malignant"}
# History topics whose coverage makes the assessment more confident.
COVERAGE_CATEGORIES = ("lesion", "change", "symptom", "systemic")


class Urgency(StrEnum):
    EMERGENCY = "emergency"
    URGENT = "urgent"
    SOON = "soon"
    ROUTINE = "routine"
    SELF_CARE = "self_care"

    @property
    def rank(self) -> int:
        """0 is the most urgent."""
        return list(Urgency).index(self)


@dataclass(frozen=True)
class Rule:
    id: str
    level: Urgency
    says: str
    when: tuple[frozenset[str], ...]
    unless: frozenset[str]
    source: str
    examples: tuple[str, ...] = ()

    def matches(self, present: set[str]) -> bool:
        return all(line & present for line in self.when) and not (self.unless & present)


@dataclass(frozen=True)
class Reason:
    rule_id: str
    description: str
    source: str


@dataclass(frozen=True)
class Assessment:
    level: Urgency
    reasons: tuple[Reason, ...] = ()
    confidence: float = 0.0
    escalate_from: Urgency = Urgency.URGENT
    failure: str = ""

    @property
    def escalate(self) -> bool:
        return self.level.rank <= self.escalate_from.rank

    @property
    def rule_ids(self) -> list[str]:
        return [reason.rule_id for reason in self.reasons]

    @classmethod
    def failed(cls, what: str) -> Assessment:
        """The agent cannot go on (brain error, timeout, silence): a clinician takes over."""
        reason = Reason("system_failure", "the assistant had a technical problem", "fail-safe policy")
        return cls(Urgency.URGENT, (reason,), confidence=1.0, failure=what)

    @classmethod
    def not_understood(cls) -> Assessment:
        """Three turns in a row could not be understood: a person takes over (agent/clarify.py)."""
        reason = Reason("not_understood", "we could not understand what you were saying", "fail-safe policy")
        return cls(Urgency.URGENT, (reason,), confidence=1.0, failure="the patient could not be understood")

    @classmethod
    def requested(cls, how: str) -> Assessment:
        """The patient asked for a clinician another way (a button, pressing 0 on the phone)."""
        reason = Reason("asks_for_clinician", "you asked to speak with a clinician", how)
        return cls(Urgency.URGENT, (reason,), confidence=1.0)


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    escalate_from: Urgency = Urgency.URGENT
    default_reason: str = "no warning signs in what you have told me so far"

    def assess(self, facts: ClinicalFacts, evidence: Iterable[str] = ()) -> Assessment:
        present = facts.policy_ids() | set(evidence)
        matched = [rule for rule in self.rules if rule.matches(present)]
        if not matched:
            return Assessment(
                Urgency.ROUTINE,
                (Reason("no_red_flags", self.default_reason, "policy default"),),
                confidence=_coverage(facts),
                escalate_from=self.escalate_from,
            )
        level = min((rule.level for rule in matched), key=lambda u: u.rank)
        top = [rule for rule in matched if rule.level == level]
        reasons = tuple(Reason(rule.id, rule.says, rule.source) for rule in top)
        confidence = 1.0 if level.rank <= self.escalate_from.rank else _coverage(facts)
        return Assessment(level, reasons, confidence=confidence, escalate_from=self.escalate_from)


def _coverage(facts: ClinicalFacts) -> float:
    """How much of the history we have: 0.25 for nothing, 1.0 for every topic covered."""
    catalogue = findings_catalogue()
    covered = {catalogue[fid].category for fid in facts.findings if fid in catalogue}
    topics = sum(category in covered for category in COVERAGE_CATEGORIES)
    topics += bool(facts.body_sites) + bool(facts.duration)
    return round(0.25 + 0.75 * topics / (len(COVERAGE_CATEGORIES) + 2), 3)


def load_policy(path: Path = RULES_FILE) -> Policy:
    """Read and check the rules file: an unknown finding or level is an error, not a silent miss."""
    data = yaml.safe_load(path.read_text())
    known = set(findings_catalogue()) | EVIDENCE_FINDINGS | site_ids()
    rules = []
    seen: set[str] = set()
    for spec in data["rules"]:
        rule = Rule(
            id=spec["id"],
            level=Urgency(spec["level"]),
            says=spec["says"],
            when=tuple(frozenset(line) for line in spec["when"]),
            unless=frozenset(spec.get("unless", [])),
            source=spec["source"],
            examples=tuple(spec.get("examples", [])),
        )
        unknown = set().union(*rule.when, rule.unless) - known
        if unknown:
            raise ValueError(f"{path.name}: rule {rule.id} names unknown findings {sorted(unknown)}")
        if rule.id in seen:
            raise ValueError(f"{path.name}: rule id {rule.id} appears twice")
        seen.add(rule.id)
        rules.append(rule)
    return Policy(tuple(rules), escalate_from=Urgency(data.get("escalate_from", "urgent")))


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    return load_policy()


def assess(facts: ClinicalFacts, evidence: Iterable[str] = ()) -> Assessment:
    """Assess with the reviewed rules file."""
    return default_policy().assess(facts, evidence)
