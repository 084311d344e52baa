"""Frames and readers shared by the safety layer's tests (escalation, clinician presence, spoken guard)."""

from __future__ import annotations

from pathlib import Path

from pipecat.frames.frames import (
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
)
from pipecat.pipeline.pipeline import Pipeline

from agent.escalation import EscalationRecord, EscalationStore
from agent.facts import extract_facts
from agent.policy import Urgency, assess
from pipeline.frames import AgentLineFrame, AgentUtteranceFrame, ClinicalStateFrame, EscalationFrame
from pipeline.safety import safety_processors


def layer(tmp_path: Path, **kwargs) -> Pipeline:
    """The whole safety layer, as a session assembles it."""
    return Pipeline(safety_processors(session_id="s1", store=EscalationStore(tmp_path / "esc"), **kwargs))


def reply(*pieces: str) -> list:
    """The brain's streamed reply."""
    return [LLMFullResponseStartFrame(), *(LLMTextFrame(p) for p in pieces), LLMFullResponseEndFrame()]


def state(text: str, final: bool = True) -> ClinicalStateFrame:
    """Triage's state of a turn (or of a phrase still being spoken), with its one assessment."""
    facts = extract_facts(text)
    return ClinicalStateFrame(facts=facts, assessment=assess(facts), final=final, text=text)


def patient(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="patient", timestamp="", finalized=True)


def spoken(frames) -> str:
    """What reaches the voice."""
    return "".join(f.text for f in frames if isinstance(f, LLMTextFrame))


def lines(frames) -> list[str]:
    """The safety layer's own lines, before the spoken guard says them."""
    return [f.text for f in frames if isinstance(f, AgentLineFrame)]


def utterances(frames) -> list[str]:
    return [f.text for f in frames if isinstance(f, AgentUtteranceFrame)]


def escalations(frames) -> list[EscalationFrame]:
    return [f for f in frames if isinstance(f, EscalationFrame)]


def escalation_frame(
    level: Urgency = Urgency.URGENT, reasons: tuple[str, ...] = ("a bleeding mole",)
) -> EscalationFrame:
    """An escalation as the escalation processor sends it, for the processors around it."""
    record = EscalationRecord.create(
        session_id="s1",
        level=level,
        reasons=list(reasons),
        rule_ids=["changing_mole"],
        summary="",
        transcript=[],
    )
    return EscalationFrame(record=record)
