"""What every model backend tells the model: one system prompt and the conversation, from a BrainRequest.

The system prompt fixes how the agent speaks (aloud: short sentences, one question at a time, no
markdown), what it must never do (diagnose with certainty, prescribe or dose, discourage care),
and carries the conversation state, the triage policy's decision with its reasons (the model words
the reply around it and never lowers it), the similar SCIN cases, and whether the patient can show
the skin, and the screening questions (``agent/screening.yaml``) that the facts call for and
that are still open. The messages alternate patient / agent and end with the patient's turn, with the camera
frames as image parts in that last message; backends translate them into their own API's shapes.
Backends that send the prompt off the machine pass ``redact``: every text that came from the
patient or the conversation goes through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from agent.backends.base import BrainRequest, CameraImage, RetrievedCase
from agent.channel import Channel
from agent.facts import ClinicalFacts
from agent.interview import screening_due
from agent.policy import Assessment, Urgency

MAX_HISTORY = 16  # utterances kept (the newest); the facts summary carries what came before
MAX_CASES = 5
MAX_LABELS = 3
SESSION_STARTED = "(The patient has joined the call.)"

ROLE = (
    "You are the intake assistant of a dermatology service, talking with a patient in a live voice "
    "conversation. Everything you write is spoken aloud by a text-to-speech voice."
)
SPEAKING = (
    "How you speak: short, plain spoken sentences, two or three at most per turn. Ask one question at a "
    "time. No markdown, no lists, no headings, no symbols or emojis; write numbers and units as they are "
    "said. Be warm and calm."
)
LIMITS = (
    "What you never do: you never give a diagnosis or say with certainty what a condition is; at most "
    "say what it could be consistent with and that a clinician has to examine it. You never prescribe, "
    "recommend or dose any medicine. You never tell the patient that care is unnecessary or discourage "
    "them from seeing a clinician or calling for help."
)
POLICY_RULE = (
    "The clinic's triage policy has decided the urgency below from what the patient said. Word your "
    "reply around that decision. Never contradict it and never make it sound less urgent."
)
LEVEL_MEANS = {
    Urgency.EMERGENCY: "EMERGENCY: the patient must call {emergency} or go to the nearest emergency "
    "department now; a clinician is being alerted.",
    Urgency.URGENT: "URGENT: a clinician is joining the conversation now; keep the patient calm and tell "
    "them help is coming.",
    Urgency.SOON: "SOON: the patient should see a clinician within two weeks.",
    Urgency.ROUTINE: "ROUTINE: no warning signs so far; a routine appointment if it persists or "
    "worries the patient.",
    Urgency.SELF_CARE: "SELF-CARE: general self-care, and tell them when to seek help.",
}
NOT_ASSESSED = "Not assessed yet: keep asking about the skin problem."
VIDEO = (
    "The patient's camera is on; the latest camera frame, when there is one, comes with their last "
    "message. Use it to ask better questions, never to diagnose. If it is blurry, dark or too far away, "
    "ask for a closer, well-lit view."
)
AUDIO = (
    "The patient is on an audio-only call and cannot show you the skin. Never ask them to show it or "
    "send a picture. Ask instead about what matters without one: where it is, how big compared with a "
    "coin, its colour, whether it is raised, its edges, bleeding, itching or pain, and whether it is "
    "changing or spreading."
)
SCREENING = (
    "Screening questions: what the patient has said raises {contexts}. The clinic's triage protocol "
    "asks the questions below before the rest of the history. Ask each once, in this order, one per "
    "turn and in your own short words, and skip any the patient has already answered in the "
    "conversation. They only gather facts: the triage policy above decides the urgency."
)
QUALITY_WORDS = {
    "blurry": "blurry",
    "dark": "too dark",
    "overexposed": "overexposed",
    "too_far": "taken from too far away",
}


@dataclass(frozen=True)
class Message:
    """One turn of the conversation as the model sees it; ``images`` are JPEG bytes shown before the text."""

    role: Literal["user", "assistant"]
    text: str
    images: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Prompt:
    system: str
    messages: list[Message] = field(default_factory=list)


def session_redactor() -> Callable[[str], str]:
    """``agent.pii.redact``, remembered for one session: each utterance is redacted once, not every turn."""
    from agent.pii import redact

    done: dict[str, str] = {}

    def cached(text: str) -> str:
        if text not in done:
            done[text] = redact(text)
        return done[text]

    return cached


def greeting(emergency_number: str) -> str:
    """The session's opening line (spoken before any model runs)."""
    from agent.disclaimer import FULL

    return (
        f"Hello, I'm the skin check-in assistant. {FULL} If this is an emergency, call {emergency_number} "
        "now. What's bothering you about your skin today?"
    )


def build_prompt(
    request: BrainRequest,
    *,
    emergency_number: str = "911",
    redact: Callable[[str], str] | None = None,
    max_history: int = MAX_HISTORY,
) -> Prompt:
    """The system prompt and alternating messages for ``request`` (the last message is the patient's)."""
    clean = redact or (lambda text: text)
    system = system_prompt(request, emergency_number=emergency_number, redact=clean)
    turns: list[Message] = []
    for utterance in request.history[-max_history:] if max_history > 0 else []:
        role = "user" if utterance.role == "patient" else "assistant"
        _append(turns, Message(role, clean(utterance.text)))
    latest = Message(
        "user",
        _with_image_notes(clean(request.patient_text), request.images),
        tuple(image.jpeg for image in request.images),
    )
    _append(turns, latest)
    if turns[0].role == "assistant":  # the agent spoke first (the greeting); chat templates want a user turn
        turns.insert(0, Message("user", SESSION_STARTED))
    return Prompt(system, turns)


def system_prompt(request: BrainRequest, *, emergency_number: str, redact: Callable[[str], str]) -> str:
    sections = [ROLE, SPEAKING, LIMITS]
    sections.append("Channel: " + (AUDIO if request.channel == Channel.AUDIO else VIDEO))
    summary = request.facts.summary() if request.facts is not None else "No clinical details given yet."
    sections.append("What the patient has told us so far: " + redact(summary))
    sections.append(policy_section(request.assessment, emergency_number))
    if request.facts is not None:
        screening = screening_section(request.facts, request.channel)
        if screening:
            sections.append(screening)
    if request.similar_cases:
        sections.append(cases_section(request.similar_cases))
    return "\n\n".join(sections)


def policy_section(assessment: Assessment | None, emergency_number: str) -> str:
    if assessment is None:
        return f"{POLICY_RULE}\nUrgency: {NOT_ASSESSED}"
    level = LEVEL_MEANS[assessment.level].format(emergency=emergency_number)
    reasons = "; ".join(reason.description for reason in assessment.reasons) or "none given"
    return f"{POLICY_RULE}\nUrgency: {level}\nReasons: {reasons}."


def screening_section(facts: ClinicalFacts, channel: str) -> str:
    """The screening questions the facts call for that are still unanswered ("" when none)."""
    due = screening_due(facts)
    if not due:
        return ""
    contexts = list(dict.fromkeys(context.says for context, _ in due))
    lines = [SCREENING.format(contexts="; ".join(contexts))]
    lines += [f"Question {n}: {question.ask(channel)}" for n, (_, question) in enumerate(due, start=1)]
    return "\n".join(lines)


def cases_section(cases: list[RetrievedCase]) -> str:
    lines = [
        "Dermatologist-labelled similar cases from the SCIN dataset, found by similarity to what the patient "
        "said or showed. They are not a diagnosis: never present them as one; use them only to choose "
        "your next question."
    ]
    for number, case in enumerate(cases[:MAX_CASES], start=1):
        labels = sorted(case.labels.items(), key=lambda item: item[1], reverse=True)[:MAX_LABELS]
        words = ", ".join(f"{label} {weight:.2f}" for label, weight in labels) or "no label"
        lines.append(f"Case {number} (similar {case.matched_on}): {words}.")
    return "\n".join(lines)


def _with_image_notes(text: str, images: list[CameraImage]) -> str:
    notes = [
        f"(The attached camera frame is {QUALITY_WORDS[image.quality]}.)"
        for image in images
        if image.quality in QUALITY_WORDS
    ]
    return " ".join([text, *notes]) if notes else text


def _append(turns: list[Message], message: Message) -> None:
    """Add ``message``, merging it into the previous one when the same side spoke twice in a row."""
    if turns and turns[-1].role == message.role:
        previous = turns[-1]
        turns[-1] = Message(
            message.role, f"{previous.text}\n{message.text}", previous.images + message.images
        )
    else:
        turns.append(message)
