"""The lexicon against patients' own words, and against false alarms.

``tests/agent/data/phrase_bank.yaml`` was written blind, from the clinical descriptions only:
for each finding, sentences patients say that mean it is present (lay words, regional English,
slang). Every one must be recognised by ``agent/findings.yaml`` (a finding implied by another,
"a new mole" is "a mole", counts). The conversations that must not escalate (the benign,
look-alike and negation scenarios) guard the other side: extending the lexicon must not turn
ordinary talk into a red flag.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import spacy
import yaml

from agent.facts import FINDINGS_FILE, ClinicalFacts, extract_facts, findings_catalogue
from agent.policy import assess

AGENT_DIR = FINDINGS_FILE.parent
BANK_FILE = Path(__file__).parent / "data" / "phrase_bank.yaml"
SCENARIOS_FILE = AGENT_DIR / "eval_scenarios.yaml"
DEV_FILE = AGENT_DIR / "eval_sets" / "dev.yaml"

BANK: dict[str, list[str]] = yaml.safe_load(BANK_FILE.read_text())["findings"]

# Sentences that do not mean their finding (the bank's author's error), each with the reason.
# Kept under 2% of the bank; nothing else is skipped.
AUTHOR_ERRORS: dict[tuple[str, str], str] = {}


def _bank_cases() -> list[Any]:
    cases = []
    for finding_id, sentences in BANK.items():
        for sentence in sentences:
            if (finding_id, sentence) not in AUTHOR_ERRORS:
                cases.append(pytest.param(finding_id, sentence, id=f"{finding_id}: {sentence}"))
    return cases


@pytest.mark.parametrize(("finding_id", "sentence"), _bank_cases())
def test_every_phrase_bank_sentence_finds_its_finding(finding_id: str, sentence: str) -> None:
    facts = extract_facts(sentence)
    present = sorted(facts.present_ids())
    absent = sorted(f for f in facts.findings if facts.absent(f))
    assert facts.present(finding_id), f"{sentence!r}: present {present}, absent {absent}"


def test_the_bank_names_only_known_findings_and_its_exceptions_are_few_and_real() -> None:
    assert set(BANK) <= set(findings_catalogue())
    total = sum(len(sentences) for sentences in BANK.values())
    assert total >= 900
    for finding_id, sentence in AUTHOR_ERRORS:
        assert sentence in BANK.get(finding_id, []), f"not in the bank: {finding_id}: {sentence!r}"
    assert len(AUTHOR_ERRORS) < 0.02 * total
    assert all(reason.strip() for reason in AUTHOR_ERRORS.values())


def test_no_phrase_means_two_findings() -> None:
    """The same words under two finding ids (or as present and as absent): one would silently win."""
    tokenizer = spacy.blank("en").tokenizer
    owners: dict[tuple[str, ...], set[str]] = defaultdict(set)
    lexicon = yaml.safe_load(FINDINGS_FILE.read_text())["findings"]
    for finding_id, spec in lexicon.items():
        for kind in ("phrases", "absent_phrases"):
            for phrase in spec.get(kind, []):
                assert isinstance(phrase, str) and phrase.strip(), f"{finding_id}: empty phrase {phrase!r}"
                words = tuple(token.lower_ for token in tokenizer(phrase.strip()))
                owners[words].add(f"{finding_id} ({kind})")
    shared = {" ".join(words): sorted(ids) for words, ids in owners.items() if len(ids) > 1}
    assert not shared, f"phrases under two findings: {shared}"


# --- false alarms -------------------------------------------------------------------------


def _quiet_conversations() -> list[Any]:
    """Every labelled conversation that must not escalate: the scenario set, and the dev split."""
    cases = [
        pytest.param(spec["turns"], id=f"scenarios/{spec['id']}")
        for spec in yaml.safe_load(SCENARIOS_FILE.read_text())["scenarios"]
        if not spec["escalate"]
    ]
    try:  # the dev split may still be being written: use what parses
        dev = yaml.safe_load(DEV_FILE.read_text())["conversations"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        dev = []
    cases += [
        pytest.param(spec["turns"], id=f"dev/{spec['id']}")
        for spec in dev
        if isinstance(spec, dict) and spec.get("kind") != "red_flag" and spec.get("turns")
    ]
    return cases


@pytest.mark.parametrize("turns", _quiet_conversations())
def test_a_conversation_without_a_red_flag_does_not_escalate(turns: list[str]) -> None:
    facts = ClinicalFacts()
    for turn in turns:
        extract_facts(turn, into=facts)
    assessment = assess(facts)
    heard = sorted(facts.present_ids())
    assert not assessment.escalate, f"{assessment.level}: {assessment.rule_ids}; {heard}"
