"""The dermatology intake interview: which question comes next, and how the agent acknowledges.

The interview walks the standard history (what and where, since when, itch / pain / bleeding,
changes, fever or feeling unwell, skin type, what was tried), skipping what the patient has
already told us, then sums up with the triage policy's recommendation. When the facts show a
context that telephone-triage protocols screen (a rash after a new medicine, a feverish child, a
wound or burn, a mole, diabetes or a weakened immune system), that context's screening questions
(``agent/screening.yaml``, reviewed as data) come first. It never decides escalation: the
triage policy assesses the same facts before the brain, and the escalation processor acts on
that assessment before these words are spoken.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from agent.backends.base import CameraImage
from agent.channel import Channel
from agent.facts import ClinicalFacts, Presence, findings_catalogue, site_ids
from agent.policy import Assessment, Urgency

SCREENING_FILE = Path(__file__).with_name("screening.yaml")

GREETING = (
    "Hello, I'm the skin check-in assistant. I'm an automated assistant: I can give you information, "
    "not a diagnosis, and a clinician should examine anything that worries you. "
    "In an emergency, call your local emergency number. What's bothering you about your skin today?"
)


@dataclass(frozen=True)
class Topic:
    id: str
    question: str
    audio_question: str = ""  # when the patient cannot show the skin (phone)

    def ask(self, channel: str) -> str:
        return self.audio_question if channel == Channel.AUDIO and self.audio_question else self.question


TOPICS = (
    Topic("concern", "What's the problem with your skin that you'd like to talk about?"),
    Topic("site", "Where on your body is it?"),
    Topic(
        "look",
        "Could you show me the area on camera, close up and in good light?",
        "As I can't see it, could you describe it: its colour, roughly how big it is, and whether it's "
        "raised, flat, or has blisters?",
    ),
    Topic("duration", "How long have you had it?"),
    Topic("symptoms", "Does it itch, hurt, burn or bleed?"),
    Topic("change", "Has it changed in size, shape or colour, or is it spreading?"),
    Topic("systemic", "Do you have a fever, or feel unwell in yourself?"),
    Topic(
        "skin_type",
        "How does your skin react to the sun: does it burn easily, tan easily, or rarely burn?",
    ),
    Topic("tried", "What have you tried for it so far, if anything?"),
)
SYMPTOMS = ("itching", "pain", "burning", "bleeding", "oozing")
CHANGES = (
    "growing",
    "rapid_growth",
    "darkening",
    "changing_shape",
    "changing_colour",
    "changing",
    "spreading",
    "new_lesion",
    "not_healing",
)
SYSTEMIC = ("fever", "chills", "unwell")
# The findings each ordinary topic asks about: a screening question that asked about one of
# them stands in for the topic.
TOPIC_FINDINGS = {"symptoms": SYMPTOMS, "change": CHANGES, "systemic": SYSTEMIC}
LESIONS = (
    "pigmented_lesion", "spot", "acne", "lump", "sore", "rash", "blisters", "peeling", "wound", "redness",
)

RECOMMENDATIONS = {
    Urgency.SOON: (
        "I'd recommend an appointment with a clinician within the next two weeks, and sooner if it "
        "gets worse."
    ),
    Urgency.ROUTINE: (
        "I'd recommend a routine appointment with your doctor or a dermatologist, so that they can "
        "take a look."
    ),
    Urgency.SELF_CARE: (
        "This is usually something you can look after at home: keep the skin moisturised and try not to "
        "scratch. Please see a pharmacist or a clinician if it spreads, bleeds, or hasn't settled "
        "in two weeks."
    ),
}
IMAGE_ADVICE = {
    "blurry": "The picture is a little blurry: could you hold the camera still, a hand's width away?",
    "dark": "The picture is too dark: could you move to a brighter spot or turn on a light?",
    "overexposed": "The picture is too bright: could you move out of direct light or away from the lamp?",
    "too_far": "The area looks small on camera: could you bring the camera closer to the skin?",
}


def covered(topic: str, facts: ClinicalFacts, images: list[CameraImage], channel: str) -> bool:
    """Whether the patient has already told (or shown) us what this topic asks."""
    if topic == "concern":
        return any(facts.mentioned(f) for f in LESIONS) or bool(facts.labels("lesion"))
    if topic == "site":
        return bool(facts.body_sites)
    if topic == "look":
        return channel == Channel.VIDEO and any(image.quality == "ok" for image in images)
    if topic == "duration":
        return facts.duration is not None
    if topic == "symptoms":
        return any(facts.mentioned(f) for f in SYMPTOMS)
    if topic == "change":
        return any(facts.mentioned(f) for f in CHANGES)
    if topic == "systemic":
        return any(facts.mentioned(f) for f in SYSTEMIC)
    if topic == "skin_type":
        return facts.skin_type is not None
    if topic == "tried":
        return bool(facts.tried)
    raise ValueError(f"unknown topic {topic}")


@dataclass(frozen=True)
class ScreeningQuestion:
    id: str
    question: str
    covers: frozenset[str]
    audio_question: str = ""  # the phone variant (the patient cannot show anything)

    def ask(self, channel: str) -> str:
        return self.audio_question if channel == Channel.AUDIO and self.audio_question else self.question


@dataclass(frozen=True)
class ScreeningContext:
    """A situation that telephone triage screens, and its questions (``agent/screening.yaml``)."""

    id: str
    says: str
    when: tuple[frozenset[str], ...]  # finding ids, and body sites as site_foot_sole
    questions: tuple[ScreeningQuestion, ...]
    source: str = ""

    @property
    def triggers(self) -> frozenset[str]:
        """The findings that raise this context: they never count as an answer to its questions."""
        return frozenset().union(*self.when)

    def applies(self, facts: ClinicalFacts) -> bool:
        present = facts.policy_ids()
        return all(line & present for line in self.when)

    def answers(self, question: ScreeningQuestion) -> frozenset[str]:
        """The findings whose mention (present or absent) answers ``question``."""
        return question.covers - self.triggers

    def answered(self, question: ScreeningQuestion, facts: ClinicalFacts) -> bool:
        return any(facts.mentioned(fid) for fid in self.answers(question))


def load_screening(path: Path = SCREENING_FILE) -> tuple[ScreeningContext, ...]:
    """Read and check the screening file: an unknown finding, site or duplicate id is an error."""
    data = yaml.safe_load(path.read_text())
    known = set(findings_catalogue()) | site_ids()
    contexts: list[ScreeningContext] = []
    seen: set[str] = set()
    for spec in data["contexts"]:
        questions = tuple(
            ScreeningQuestion(
                id=q["id"],
                question=q["ask"],
                covers=frozenset(q["covers"]),
                audio_question=q.get("audio_ask", ""),
            )
            for q in spec["questions"]
        )
        context = ScreeningContext(
            id=spec["id"],
            says=spec["says"],
            when=tuple(frozenset(line) for line in spec["when"]),
            questions=questions,
            source=spec.get("source", ""),
        )
        where = f"{path.name}: context {context.id}"
        if not context.when or not all(context.when) or not questions:
            raise ValueError(f"{where} needs non-empty `when` lines and at least one question")
        named = set().union(*context.when, *(q.covers for q in questions))
        if named - known:
            raise ValueError(f"{where} names unknown findings or sites {sorted(named - known)}")
        for ident in (context.id, *(q.id for q in questions)):
            if ident in seen:
                raise ValueError(f"{path.name}: id {ident} appears twice")
            seen.add(ident)
        if any(not q.covers for q in questions):
            raise ValueError(f"{where}: every question needs the findings it `covers`")
        contexts.append(context)
    return tuple(contexts)


@lru_cache(maxsize=1)
def default_screening() -> tuple[ScreeningContext, ...]:
    return load_screening()


def screening_due(
    facts: ClinicalFacts,
    asked: Collection[str] = (),
    contexts: tuple[ScreeningContext, ...] | None = None,
) -> list[tuple[ScreeningContext, ScreeningQuestion]]:
    """The screening questions still to ask, in order, with their contexts.

    A question is due while its context applies, unless it was ``asked`` (question ids), it is
    answered (one of its findings is mentioned, present or absent, other than those that raise
    the context), or earlier questions (asked or due) already asked about all it covers.
    """
    contexts = default_screening() if contexts is None else contexts
    every = {q.id: (c, q) for c in contexts for q in c.questions}
    asked_about = screened_findings(asked, contexts)
    due = []
    for context in contexts:
        if not context.applies(facts):
            continue
        for question in context.questions:
            if question.id in asked or context.answered(question, facts):
                continue
            wanted = context.answers(question) or question.covers
            if wanted <= asked_about:
                continue
            due.append(every[question.id])
            asked_about |= question.covers
    return due


def screened_findings(
    asked: Collection[str], contexts: tuple[ScreeningContext, ...] | None = None
) -> set[str]:
    """Every finding the screening questions with ids in ``asked`` asked about."""
    contexts = default_screening() if contexts is None else contexts
    return {fid for c in contexts for q in c.questions if q.id in asked for fid in q.covers}


def topic_screened(topic: str, screened: Collection[str]) -> bool:
    """Whether a screening question already asked what this ordinary topic asks."""
    return any(fid in screened for fid in TOPIC_FINDINGS.get(topic, ()))


def acknowledge(before: ClinicalFacts, after: ClinicalFacts) -> str:
    """One short sentence that shows the patient what we heard this turn ("" if nothing new)."""
    pieces: list[str] = []
    new_sites = [w for w in after.site_words if w not in before.site_words]
    if new_sites:
        pieces.append("on your " + " and ".join(new_sites[:2]))
    if after.duration_words and after.duration_words != before.duration_words:
        pieces.append(after.duration_words.removeprefix("for ").strip())
    gained = {fid: state for fid, state in after.findings.items() if before.findings.get(fid) != state}
    present = [fid for fid, state in gained.items() if state == Presence.PRESENT]
    absent = [fid for fid, state in gained.items() if state == Presence.ABSENT]
    labels = _labels(after)
    if present:
        pieces.append(", ".join(labels[fid] for fid in present[:3]))
    if absent:
        pieces.append("no " + " or ".join(labels[fid] for fid in absent[:3]))
    if after.skin_type and after.skin_type != before.skin_type:
        pieces.append("your skin type noted")
    if after.tried and after.tried != before.tried:
        pieces.append("you've tried " + after.tried[-1])
    if not pieces:
        return ""
    return "Thank you: " + "; ".join(pieces) + "."


def _labels(facts: ClinicalFacts) -> dict[str, str]:
    labels = {fid: finding.label for fid, finding in findings_catalogue().items()}
    for fid in facts.findings:  # a finding the lexicon does not label (yet) is said by its id
        labels.setdefault(fid, fid.replace("_", " "))
    return labels


def summary_line(facts: ClinicalFacts, assessment: Assessment | None) -> str:
    """The closing summary, with the policy's recommendation."""
    recommendation = RECOMMENDATIONS.get(
        assessment.level if assessment else Urgency.ROUTINE, RECOMMENDATIONS[Urgency.ROUTINE]
    )
    heard = spoken_summary(facts)
    return f"Thank you, that's everything I need. Here is what I heard. {heard} {recommendation}"


def spoken_summary(facts: ClinicalFacts) -> str:
    """The clinical summary read aloud: its parts as short sentences."""
    parts = [part.strip() for part in facts.summary().rstrip(".").split(";") if part.strip()]
    return " ".join(part[0].upper() + part[1:] + "." for part in parts)


def resumed_greeting(facts: ClinicalFacts, emergency_number: str) -> str:
    """The opening line of a session that resumes one cut off (``pipeline/resume.py``): it says
    what happened, what the agent still knows, and goes on (the disclaimer, as every session's)."""
    from agent.disclaimer import FULL

    known = spoken_summary(facts) if facts.findings or facts.site_words else ""
    knew = f"I still have what you told me. {known} " if known else ""
    return (
        f"Sorry, we were cut off; we're connected again. {knew}{FULL} If this is an emergency, call "
        f"{emergency_number} now. Let's carry on: is there anything you'd like to add?"
    )
