"""Clinical facts from the patient's words: what they said, and what they said was *not* so.

The phrases live in ``agent/findings.yaml``. spaCy matches them (a blank English pipeline: a
tokenizer and rules, no statistical model), and NegEx (``negspacy``) decides whether a clause
negates them: "no fever", "it isn't bleeding" and "I don't think it has changed" record the
finding as absent. Hedges ("maybe", "I'm not sure if") do not negate.

A finding once said to be present stays present for the session: a later "not now" does not
erase "it bled last week". Durations, ages, skin type and what was tried are read with small
patterns; they feed the interview and the retrieval query, never escalation on their own.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

FINDINGS_FILE = Path(__file__).with_name("findings.yaml")
SITE_PREFIX = "site_"

# NegEx's clinical termset, adapted to how patients talk. Negation cues that are part of a
# finding's own phrase ("can't breathe") never negate it: the phrase is one span.
EXTRA_NEGATIONS = [
    "haven't",
    "havent",
    "hasn't",
    "hasnt",
    "haven't had",
    "hasn't had",
    "haven't noticed",
    "haven't seen",
    "not noticed",
    "nothing like",
    "none",
    "not any",
    "no sign of any",
    "nor",
    "neither",
    "don't think",
    "do not think",
    "don't believe",
    "nobody",
    "nothing's",
    "nothing is",
    "no one",
    "noone",
    "nowhere near",
    "not near",
    "doesn't seem",
    "does not seem",
]
# "not sure if it's bleeding" is a hedge, not a denial: it must not hide a red flag.
EXTRA_PSEUDO = [
    "not sure",
    "not certain",
    "not really sure",
    "don't know if",
    "do not know if",
    "don't know whether",
    "not sure if",
    "not sure whether",
    "can't tell",
    "cannot tell",
    "not only",
    "no idea if",
    "i'm not sure",
    # "a new mole that wasn't there before": the "wasn't" belongs to "there", not to the mole
    "wasn't there",
    "was not there",
    "weren't there",
    "were not there",
    # "I can't sleep, the pain is that bad"
    "can't sleep",
    "cannot sleep",
]
# A new clause ends a negation's reach. "and" is one: "no fever and the mole is bleeding"
# must not deny the bleeding (the cost, "no fever and chills" keeping chills, is the safe one).
EXTRA_TERMINATION = ["and", "then", "now", "also", "plus", "because", "since", "so", "while", "when"]


class Presence(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"


@dataclass(frozen=True)
class Finding:
    id: str
    category: str
    label: str
    implies: tuple[str, ...] = ()  # "a new mole" is also "a mole"


@dataclass
class ClinicalFacts:
    """Everything the patient has told us that matters clinically, for one session."""

    findings: dict[str, Presence] = field(default_factory=dict)
    body_sites: list[str] = field(default_factory=list)  # SCIN body_parts_* suffixes, in order
    site_words: list[str] = field(default_factory=list)  # the patient's own words for the site
    duration: str | None = None  # a SCIN condition_duration value
    duration_words: str | None = None
    age_years: float | None = None
    skin_type: str | None = None  # FST1 .. FST6
    tried: list[str] = field(default_factory=list)

    def present(self, finding_id: str) -> bool:
        return self.findings.get(finding_id) == Presence.PRESENT

    def absent(self, finding_id: str) -> bool:
        return self.findings.get(finding_id) == Presence.ABSENT

    def mentioned(self, finding_id: str) -> bool:
        return finding_id in self.findings

    def present_ids(self) -> set[str]:
        return {fid for fid, state in self.findings.items() if state == Presence.PRESENT}

    def policy_ids(self) -> set[str]:
        """What the rules may name: the findings present, and the body sites (``site_foot_sole``)."""
        return self.present_ids() | {SITE_PREFIX + site for site in self.body_sites}

    def record(self, finding_id: str, presence: Presence) -> None:
        if self.findings.get(finding_id) != Presence.PRESENT:  # present is sticky
            self.findings[finding_id] = presence
        if presence == Presence.PRESENT:
            for implied in findings_catalogue()[finding_id].implies:
                self.record(implied, presence)

    def copy(self) -> ClinicalFacts:
        return copy.deepcopy(self)

    def labels(self, category: str, presence: Presence = Presence.PRESENT) -> list[str]:
        catalogue = findings_catalogue()
        return [
            catalogue[fid].label
            for fid, state in self.findings.items()
            if state == presence and fid in catalogue and catalogue[fid].category == category
        ]

    def summary(self) -> str:
        """A short clinical summary in plain words (no personal data is ever stored here)."""
        parts = []
        lesions = self.labels("lesion")
        if lesions:
            parts.append("Concern: " + ", ".join(lesions))
        if self.site_words:
            parts.append("site: " + ", ".join(self.site_words))
        if self.duration_words:
            parts.append("duration: " + self.duration_words)
        for title, category in (("changes", "change"), ("symptoms", "symptom"), ("systemic", "systemic")):
            present = self.labels(category)
            if present:
                parts.append(f"{title}: " + ", ".join(present))
        denied = [
            label for cat in ("symptom", "systemic", "change") for label in self.labels(cat, Presence.ABSENT)
        ]
        if denied:
            parts.append("denies: " + ", ".join(denied))
        people = self.labels("person")
        if people:
            parts.append("patient: " + ", ".join(people))
        if self.age_years is not None:
            parts.append(f"age: {_age_words(self.age_years)}")
        history = self.labels("history")
        if history:
            parts.append("history: " + ", ".join(history))
        if self.skin_type:
            parts.append(f"skin type: {self.skin_type}")
        if self.tried:
            parts.append("tried: " + ", ".join(self.tried))
        return "; ".join(parts) + "." if parts else "No clinical details given yet."

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": {k: v.value for k, v in self.findings.items()},
            "body_sites": list(self.body_sites),
            "site_words": list(self.site_words),
            "duration": self.duration,
            "duration_words": self.duration_words,
            "age_years": self.age_years,
            "skin_type": self.skin_type,
            "tried": list(self.tried),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClinicalFacts:
        """The facts ``to_dict`` wrote (a resumed session's, ``pipeline/resume.py``).

        Raises ValueError for a finding id or presence the lexicon does not know: facts that
        were not ours are never half read.
        """
        catalogue = findings_catalogue()
        findings = {str(k): Presence(v) for k, v in dict(data.get("findings") or {}).items()}
        unknown = set(findings) - set(catalogue)
        if unknown:
            raise ValueError(f"unknown finding ids: {sorted(unknown)}")
        age = data.get("age_years")
        return cls(
            findings=findings,
            body_sites=[str(s) for s in data.get("body_sites") or []],
            site_words=[str(s) for s in data.get("site_words") or []],
            duration=data.get("duration"),
            duration_words=data.get("duration_words"),
            age_years=float(age) if age is not None else None,
            skin_type=data.get("skin_type"),
            tried=[str(t) for t in data.get("tried") or []],
        )


# --- the lexicon ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _lexicon() -> dict[str, Any]:
    return yaml.safe_load(FINDINGS_FILE.read_text())


@lru_cache(maxsize=1)
def findings_catalogue() -> dict[str, Finding]:
    """Every finding the lexicon knows, by id."""
    return {
        fid: Finding(fid, spec["category"], spec["label"], tuple(spec.get("implies", ())))
        for fid, spec in _lexicon()["findings"].items()
    }


def site_ids() -> set[str]:
    """Every body site the lexicon knows, as the ids the rules file may name."""
    return {SITE_PREFIX + site for site in _lexicon()["body_sites"]}


@lru_cache(maxsize=1)
def _nlp() -> Any:
    import spacy
    from negspacy.negation import Negex  # noqa: F401 - registers the "negex" factory
    from negspacy.termsets import termset

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
    patterns = []
    for fid, spec in _lexicon()["findings"].items():
        patterns += [{"label": "FINDING", "pattern": p, "id": fid} for p in spec["phrases"]]
        patterns += [{"label": "DENIED", "pattern": p, "id": fid} for p in spec.get("absent_phrases", [])]
    ruler.add_patterns(patterns)
    terms = termset("en_clinical")
    terms.add_patterns(
        {
            "preceding_negations": EXTRA_NEGATIONS,
            "pseudo_negations": EXTRA_PSEUDO,
            "termination": EXTRA_TERMINATION,
        }
    )
    nlp.add_pipe("negex", config={"ent_types": ["FINDING"], "neg_termset": terms.get_patterns()})
    return nlp


@lru_cache(maxsize=1)
def _site_matcher() -> Any:
    """Body sites overlap finding phrases ("lips"), so they are matched on their own."""
    from spacy.matcher import PhraseMatcher

    nlp = _nlp()
    matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
    for site, words in _lexicon()["body_sites"].items():
        matcher.add(site, [nlp.make_doc(w) for w in words])
    return matcher


# --- small patterns: durations, ages, skin type, treatments --------------------------------

_NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "a couple of": 2,
    "couple of": 2,
    "a few": 3,
    "few": 3,
    "several": 4,
    "many": 6,
}
_TENS = r"(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)"
_UNITS = r"(?:one|two|three|four|five|six|seven|eight|nine)"
# "eighty-two" and "eighty two" are one number, tried before "two" alone.
_NUM = (
    rf"(\d+(?:\.\d+)?|{_TENS}[\s-]{_UNITS}|"
    + "|".join(sorted(map(re.escape, _NUMBER_WORDS), key=len, reverse=True))
    + r")"
)
_UNIT_DAYS = {"hour": 1 / 24, "day": 1, "night": 1, "week": 7, "month": 30, "year": 365}
DURATION = re.compile(
    rf"\b(?:for|about|around|almost|nearly|over|past|last|since|roughly|maybe)?\s*{_NUM}\s*"
    r"(?:more\s+)?(hour|day|night|week|month|year)s?\b(?!\s+old)",
    re.IGNORECASE,
)
DURATION_WORDS = [
    (re.compile(r"\b(today|this morning|last night|yesterday|since yesterday)\b", re.I), 1.0),
    (
        re.compile(
            r"\b(this week|since monday|since tuesday|since wednesday|since thursday|since friday|"
            r"since the weekend|few days|couple of days)\b",
            re.I,
        ),
        4.0,
    ),
    (re.compile(r"\b(last week|since last week)\b", re.I), 10.0),
    (re.compile(r"\b(last month|since last month)\b", re.I), 40.0),
    (re.compile(r"\b(last year|since last year|for years|ages)\b", re.I), 400.0),
]
AGE = re.compile(rf"\b{_NUM}[\s-]*(week|month|year)s?[\s-]*old\b", re.IGNORECASE)
# "my son's ten months", "she is only six weeks": a baby's age said without "old"
AGE_BABY = re.compile(
    rf"\b(?:he's|she's|he is|she is|son's|daughter's|baby's|baby is|who's|only|just)"
    rf"\s+{_NUM}\s*(week|month)s?\b",
    re.IGNORECASE,
)
AGE_PLAIN = re.compile(r"\b(?:i am|i'm|im|aged|age)\s+(\d{1,3})\b(?!\s*(?:%|percent|times|kg|pounds))", re.I)
SKIN_TYPES = [
    (re.compile(r"\bfitzpatrick\s*(?:type\s*)?([1-6]|one|two|three|four|five|six)\b", re.I), None),
    (re.compile(r"\bskin type\s*([1-6]|one|two|three|four|five|six)\b", re.I), None),
    (
        re.compile(
            r"\b(always burn|burn very easily|burn really easily|never tan|very fair|very pale)\b", re.I
        ),
        "FST1",
    ),
    (
        re.compile(
            r"\b(burn easily|usually burns?|burns? easily|fair skin|pale skin|tan poorly|"
            r"rarely tan|burns? in the sun)\b",
            re.I,
        ),
        "FST2",
    ),
    (re.compile(r"\b(sometimes burn|tan gradually|tan slowly|olive skin|light brown skin)\b", re.I), "FST3"),
    (re.compile(r"\b(rarely burn|tan easily|tan well|brown skin)\b", re.I), "FST4"),
    (re.compile(r"\b(very rarely burn|dark brown skin|never burn)\b", re.I), "FST5"),
    (re.compile(r"\b(black skin|very dark skin|deeply pigmented)\b", re.I), "FST6"),
]
TRIED = re.compile(
    r"\b(?:i(?:'ve| have)? tried|i(?:'ve| have)? used|i(?:'ve| have)? been using|i(?:'ve| have)? put|"
    r"i(?:'ve| have)? applied|i(?:'ve| have)? been putting|i(?:'ve| have)? taken|"
    r"i(?:'ve| have)? been taking)\s+"
    r"([a-z'-]+(?:\s+[a-z'-]+){0,5}?)(?=\s*[,.;!?]|\s+(?:but|and it|and that|which|on it|for it|it)\b|\s*$)",
    re.IGNORECASE,
)
NOTHING_TRIED = re.compile(
    r"\b(haven't tried|have not tried|not tried|nothing yet|haven't used|didn't try)\b", re.I
)
_WORD_DIGITS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def _number(token: str) -> float:
    token = token.lower().strip()
    if token[0].isdigit():
        return float(token)
    return float(sum(_NUMBER_WORDS.get(part, 0) for part in re.split(r"[\s-]+", token)) or 1)


def scin_duration(days: float) -> str:
    """SCIN's ``condition_duration`` bucket for a number of days."""
    if days <= 1:
        return "ONE_DAY"
    if days < 7:
        return "LESS_THAN_ONE_WEEK"
    if days <= 28:
        return "ONE_TO_FOUR_WEEKS"
    if days <= 92:
        return "ONE_TO_THREE_MONTHS"
    if days <= 366:
        return "THREE_TO_TWELVE_MONTHS"
    if days <= 5 * 365:
        return "MORE_THAN_ONE_YEAR"
    return "MORE_THAN_FIVE_YEARS"


def _age_words(years: float) -> str:
    if years < 1:
        return f"{round(years * 12)} months"
    return f"{int(years)} years"


def _read_duration(text: str, facts: ClinicalFacts) -> None:
    match = DURATION.search(text)
    if match:
        days = _number(match.group(1)) * _UNIT_DAYS[match.group(2).lower()]
        facts.duration, facts.duration_words = scin_duration(days), match.group(0).strip()
        return
    for pattern, days in DURATION_WORDS:
        found = pattern.search(text)
        if found:
            facts.duration, facts.duration_words = scin_duration(days), found.group(0)
            return


def _read_age(text: str, facts: ClinicalFacts) -> None:
    match = AGE.search(text) or AGE_BABY.search(text)
    if match:
        value, unit = _number(match.group(1)), match.group(2).lower()
        facts.age_years = value / {"week": 52.0, "month": 12.0, "year": 1.0}[unit]
    else:
        plain = AGE_PLAIN.search(text)
        if plain and 0 < int(plain.group(1)) < 120:
            facts.age_years = float(plain.group(1))
    if facts.age_years is None:
        return
    if facts.age_years < 1:
        facts.record("infant", Presence.PRESENT)
    elif facts.age_years < 16 and not re.search(r"\b(i am|i'm|im)\b", text, re.I):
        facts.record("child", Presence.PRESENT)
    elif facts.age_years >= 75:
        facts.record("older_adult", Presence.PRESENT)


def _read_skin_type(text: str, facts: ClinicalFacts) -> None:
    for pattern, fst in SKIN_TYPES:
        match = pattern.search(text)
        if match:
            if fst is None:
                value = match.group(1).lower()
                fst = f"FST{_WORD_DIGITS.get(value, value)}"
            facts.skin_type = fst
            return


def _read_tried(text: str, facts: ClinicalFacts) -> None:
    for match in TRIED.finditer(text):
        what = match.group(1).strip(" ,.")
        if what and what.lower() not in (t.lower() for t in facts.tried):
            facts.tried.append(what)
    if not facts.tried and NOTHING_TRIED.search(text):
        facts.tried.append("nothing yet")


def extract_facts(text: str, into: ClinicalFacts | None = None) -> ClinicalFacts:
    """Add what ``text`` says to ``into`` (a new ClinicalFacts when None) and return it."""
    facts = into if into is not None else ClinicalFacts()
    if not text or not text.strip():
        return facts
    doc = _nlp()(text)
    for ent in doc.ents:
        if ent.label_ == "FINDING":
            negated = ent._.negex and not _negated_only_by_a_phrase(doc, ent)
            facts.record(ent.ent_id_, Presence.ABSENT if negated else Presence.PRESENT)
        elif ent.label_ == "DENIED":
            facts.record(ent.ent_id_, Presence.ABSENT)
    _read_sites(doc, facts)
    if facts.present("since_childhood") and facts.duration is None:
        facts.duration, facts.duration_words = "SINCE_CHILDHOOD", "since childhood"
    _read_duration(text, facts)
    _read_age(text, facts)
    _read_skin_type(text, facts)
    _read_tried(text, facts)
    return facts


_NEGATION_WORDS = frozenset(
    "no not never without none nobody nothing neither nor n't cannot can't won't isn't hasn't haven't "
    "doesn't don't didn't wasn't weren't aren't wouldn't couldn't shouldn't".split()
)


def _negated_only_by_a_phrase(doc: Any, ent: Any) -> bool:
    """NegEx negated ``ent`` with a cue that belongs to an earlier finding's own phrase.

    "He hasn't had a wee all day, he's floppy": the "hasn't" is part of "hasn't had a wee" (a
    finding in its own right), not a denial of "floppy". True when the only negation cues
    between the previous finding that carries one and ``ent`` are inside that finding.
    """
    before = [e for e in doc.ents if e.end <= ent.start and e.label_ == "FINDING"]
    if not before or not any(t.lower_ in _NEGATION_WORDS for t in before[-1]):
        return False
    between = doc[before[-1].end : ent.start]
    return not any(t.lower_ in _NEGATION_WORDS for t in between)


def _read_sites(doc: Any, facts: ClinicalFacts) -> None:
    from spacy.util import filter_spans

    for span in filter_spans(_site_matcher()(doc, as_spans=True)):
        if span.label_ not in facts.body_sites:
            facts.body_sites.append(span.label_)
        words = _with_side(doc, span.start, span.text.lower())
        if words not in facts.site_words:
            facts.site_words.append(words)


def _with_side(doc: Any, start: int, words: str) -> str:
    """Keep "left" / "right" / "upper" / "lower" with the site word when the patient said it."""
    if start > 0 and doc[start - 1].lower_ in ("left", "right", "upper", "lower", "inner", "outer"):
        return f"{doc[start - 1].lower_} {words}"
    return words
