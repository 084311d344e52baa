"""The words that go into the text index: a case's document, and the query from the conversation.

Both sides use the same phrases ("Body site: arm", "Duration: one to four weeks") so that
MiniLM compares like with like. The query is built from the canonical labels of the patient's
findings, never from the patient's own words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.cases import ScinCase

if TYPE_CHECKING:
    from agent.facts import ClinicalFacts

BODY_PART_WORDS = {
    "head_or_neck": "head or neck",
    "arm": "arm",
    "palm": "palm",
    "back_of_hand": "back of the hand",
    "torso_front": "chest or abdomen",
    "torso_back": "back",
    "genitalia_or_groin": "genitals or groin",
    "buttocks": "buttocks",
    "leg": "leg",
    "foot_top_or_side": "top or side of the foot",
    "foot_sole": "sole of the foot",
    "other": "other site",
}
DURATION_WORDS = {
    "ONE_DAY": "one day",
    "LESS_THAN_ONE_WEEK": "less than one week",
    "ONE_TO_FOUR_WEEKS": "one to four weeks",
    "ONE_TO_THREE_MONTHS": "one to three months",
    "THREE_TO_TWELVE_MONTHS": "three to twelve months",
    "MORE_THAN_ONE_YEAR": "more than one year",
    "MORE_THAN_FIVE_YEARS": "more than five years",
    "SINCE_CHILDHOOD": "since childhood",
}
SYMPTOM_WORDS = {
    "bothersome_appearance": "bothersome appearance",
    "bleeding": "bleeding",
    "increasing_size": "getting bigger",
    "darkening": "getting darker",
    "itching": "itching",
    "burning": "burning",
    "pain": "pain",
}
OTHER_SYMPTOM_WORDS = {
    "fever": "fever",
    "chills": "chills",
    "fatigue": "fatigue",
    "joint_pain": "joint pain",
    "mouth_sores": "sores in the mouth",
    "shortness_of_breath": "trouble breathing",
}
TEXTURE_WORDS = {
    "raised_or_bumpy": "raised or bumpy",
    "flat": "flat",
    "rough_or_flaky": "rough or flaky",
    "fluid_filled": "fluid filled",
}
CATEGORY_WORDS = {
    "ACNE": "acne",
    "GROWTH_OR_MOLE": "a growth or mole",
    "HAIR_LOSS": "hair loss",
    "OTHER_HAIR_PROBLEM": "a hair problem",
    "NAIL_PROBLEM": "a nail problem",
    "PIGMENTARY_PROBLEM": "a change in skin colour",
    "RASH": "a rash",
    "LOOKS_HEALTHY": "healthy looking skin",
}


def skin_type_words(fst: str | None) -> str | None:
    """ "FST3" -> "Fitzpatrick type 3"."""
    if not fst or not fst.startswith("FST"):
        return None
    return f"Fitzpatrick type {fst[3:]}"


def _join(title: str, words: list[str]) -> str | None:
    words = [w for w in words if w]
    return f"{title}: {', '.join(words)}." if words else None


def _sentences(parts: list[str | None]) -> str:
    return " ".join(part for part in parts if part)


def case_document(case: ScinCase) -> str:
    """What the text index embeds for a case: labels, concern, symptoms, site, duration, skin type."""
    labels = sorted(case.weighted_labels.items(), key=lambda item: -item[1])
    return _sentences(
        [
            _join("Diagnosis", [name for name, _ in labels]),
            _join("Concern", [CATEGORY_WORDS.get(case.related_category or "", "")]),
            _join("Looks", [TEXTURE_WORDS.get(t, "") for t in case.textures]),
            _join("Symptoms", [SYMPTOM_WORDS.get(s, "") for s in case.symptoms]),
            _join("Other symptoms", [OTHER_SYMPTOM_WORDS.get(s, "") for s in case.other_symptoms]),
            _join("Body site", [BODY_PART_WORDS.get(b, "") for b in case.body_parts]),
            _join("Duration", [DURATION_WORDS.get(case.duration or "", "")]),
            _join("Skin type", [skin_type_words(case.fitzpatrick) or ""]),
        ]
    )


def query_from_facts(facts: ClinicalFacts) -> str:
    """The text query for the conversation so far ("" when nothing searchable has been said)."""
    return _sentences(
        [
            _join("Concern", facts.labels("lesion")),
            _join("Symptoms", facts.labels("change") + facts.labels("symptom")),
            _join("Other symptoms", facts.labels("systemic")),
            _join("Body site", [BODY_PART_WORDS.get(site, "") for site in facts.body_sites]),
            _join("Duration", [DURATION_WORDS.get(facts.duration or "", "")]),
            _join("Skin type", [skin_type_words(facts.skin_type) or ""]),
        ]
    )
