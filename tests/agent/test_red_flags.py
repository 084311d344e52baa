"""Every red flag in the reviewed rules file escalates, at its level, on patients' own words."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.facts import extract_facts
from agent.policy import EVIDENCE_FINDINGS, Urgency, assess, default_policy, load_policy

RULES = default_policy().rules
# Rules met by words (evidence rules are tested with evidence below).
ESCALATING = [
    rule
    for rule in RULES
    if rule.level.rank <= Urgency.URGENT.rank and not set().union(*rule.when) <= EVIDENCE_FINDINGS
]


def test_every_escalating_rule_has_examples_and_a_source() -> None:
    for rule in ESCALATING:
        assert rule.examples, f"{rule.id} has no example sentence"
        assert rule.source.strip(), f"{rule.id} names no source"


@pytest.mark.parametrize(
    ("rule_id", "sentence"),
    [(rule.id, example) for rule in RULES for example in rule.examples],
)
def test_each_rule_example_meets_the_rule_at_its_level(rule_id: str, sentence: str) -> None:
    rule = next(r for r in RULES if r.id == rule_id)
    facts = extract_facts(sentence)
    assessment = assess(facts)
    assert rule.matches(facts.policy_ids()), f"{sentence!r} -> {facts.findings}"
    assert assessment.level.rank <= rule.level.rank
    assert assessment.escalate == (rule.level.rank <= Urgency.URGENT.rank)


# One hand-written conversation per red flag of the product brief, in words the rules file
# does not use as its own examples.
RED_FLAGS = [
    ("a changing mole", ["My mole has gone darker over the summer."], Urgency.URGENT),
    ("a bleeding mole", ["A mole under my bra strap keeps bleeding."], Urgency.URGENT),
    ("a multi-coloured mole", ["The mole is blue and brown, two colours."], Urgency.URGENT),
    ("an itching mole", ["The mole on my back has been itchy for weeks."], Urgency.URGENT),
    ("a new mole", ["I'm 45 and I've got a new mole on my arm."], Urgency.URGENT),
    ("ugly duckling", ["One mole is not like the others."], Urgency.URGENT),
    ("a sore that does not heal", ["The spot on my scalp has not healed in three months."], Urgency.URGENT),
    ("a nail streak", ["There's a brown stripe under my big toenail."], Urgency.URGENT),
    ("a rapidly growing lump", ["The lump on my neck is getting bigger every week."], Urgency.URGENT),
    (
        "spreading redness with fever",
        ["The redness on my arm is spreading.", "I feel feverish."],
        Urgency.URGENT,
    ),
    ("a red streak from a wound", ["After the dog bite there's a red line going up my leg."], Urgency.URGENT),
    (
        "pain out of proportion after a wound",
        ["My cut is excruciating, much more painful than it looks."],
        Urgency.EMERGENCY,
    ),
    ("dusky skin after a wound", ["The skin around the graze is dusky and mottled."], Urgency.EMERGENCY),
    ("widespread blistering", ["I have blisters all over my body."], Urgency.EMERGENCY),
    (
        "blistering with mouth sores",
        ["My skin is blistering and I have ulcers in my mouth."],
        Urgency.EMERGENCY,
    ),
    ("blistering with sore eyes", ["There are blisters on my arms and my eyes are red."], Urgency.EMERGENCY),
    ("blistering with genital sores", ["I have blisters and sores down there too."], Urgency.EMERGENCY),
    (
        "peeling after a new medicine",
        ["I started lamotrigine and now my skin is peeling."],
        Urgency.EMERGENCY,
    ),
    ("lip swelling", ["My lips are swollen after a bee sting."], Urgency.EMERGENCY),
    ("tongue swelling", ["My tongue is swelling."], Urgency.EMERGENCY),
    ("throat swelling", ["My throat is swollen and it's hard to swallow."], Urgency.EMERGENCY),
    ("breathing difficulty", ["I'm short of breath and covered in hives."], Urgency.EMERGENCY),
    (
        "a non-blanching rash with fever",
        ["He has a fever and a purple rash that doesn't blanch."],
        Urgency.EMERGENCY,
    ),
    ("a blistering rash near the eye", ["I have blisters around my eye."], Urgency.URGENT),
    ("a rash in a baby with fever", ["My 2 month old has a rash and a high temperature."], Urgency.EMERGENCY),
]


@pytest.mark.parametrize(("flag", "turns", "level"), RED_FLAGS, ids=[f[0] for f in RED_FLAGS])
def test_every_red_flag_of_the_brief_escalates(flag: str, turns: list[str], level: Urgency) -> None:
    facts = extract_facts(turns[0])
    for turn in turns[1:]:
        extract_facts(turn, into=facts)
    assessment = assess(facts)
    assert assessment.escalate, f"{flag}: {facts.findings}"
    assert assessment.level.rank <= level.rank, f"{flag}: {assessment.level}"
    assert assessment.reasons and all(r.source for r in assessment.reasons)


@pytest.mark.parametrize(
    "sentence",
    [
        "I have a mole that has not changed and does not bleed.",
        "No fever, just a red patch on my shin.",
        "I have hives but no trouble breathing and my lips are not swollen.",
        "I've had eczema on my hands since I was a child.",
        "I have acne on my chin.",
        "There's a wart on my finger.",
    ],
)
def test_look_alikes_and_denied_signs_do_not_escalate(sentence: str) -> None:
    assert not assess(extract_facts(sentence)).escalate


def test_benign_similar_cases_never_lower_a_red_flag() -> None:
    facts = extract_facts("My mole is bleeding.")
    assert assess(facts, evidence=set()).escalate
    assert assess(facts, evidence={"retrieval_malignant"}).escalate


def test_malignant_similar_cases_raise_urgency() -> None:
    facts = extract_facts("I have a small brown spot on my arm.")
    assert not assess(facts).escalate
    assert assess(facts, evidence={"retrieval_malignant"}).escalate


def test_a_rule_naming_an_unknown_finding_is_refused(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "escalate_from: urgent\nrules:\n  - id: typo\n    level: urgent\n    says: x\n"
        "    when: [[bleedin]]\n    source: test\n"
    )
    with pytest.raises(ValueError, match="unknown findings"):
        load_policy(rules)


def test_a_failure_or_a_request_escalates_to_a_clinician() -> None:
    from agent.policy import Assessment

    assert Assessment.failed("timeout").escalate
    assert Assessment.requested("phone keypad 0").escalate
