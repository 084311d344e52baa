"""The dermatology intake interview: which question comes next, and how the agent acknowledges.

The interview walks the standard history (what and where, since when, itch / pain / bleeding,
changes, fever or feeling unwell, skin type, what was tried), skipping what the patient has
already told us, then sums up with the triage policy's recommendation. It never decides
escalation: the safety processor does, from the same facts, before these words are spoken.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.backends.base import CameraImage
from agent.facts import ClinicalFacts, Presence
from agent.policy import Assessment, Urgency

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
        return self.audio_question if channel == "audio" and self.audio_question else self.question


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
        return channel == "video" and any(image.quality == "ok" for image in images)
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
    from agent.facts import findings_catalogue

    return {fid: finding.label for fid, finding in findings_catalogue().items()}


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
