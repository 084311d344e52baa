"""Turning a replayed session's timeline and transcript events into ``result.json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from agent.pii import redact
from agent.policy import Urgency
from pipeline.observers import EventKind, TranscriptEvent

BURST_GAP_S = 0.5


class PlayedTurn(Protocol):
    """When a patient turn was played, in seconds since the session started."""

    @property
    def start_s(self) -> float: ...

    @property
    def speech_start_s(self) -> float: ...

    @property
    def speech_end_s(self) -> float: ...


class ReplayTimeline(Protocol):
    """What crossed the transport, on one clock (``media.file_transport.ReplayTimeline``; the
    pipeline layer reads it without importing the media layer)."""

    @property
    def t0(self) -> float: ...

    @property
    def patient_turns(self) -> Sequence[PlayedTurn]: ...

    @property
    def agent_audio(self) -> Sequence[tuple[float, np.ndarray]]: ...

    @property
    def agent_rate(self) -> int: ...


def _agent_span(timeline: ReplayTimeline, start_after: float, before: float) -> tuple[float, float] | None:
    """The first burst of agent audio between two times (session seconds)."""
    rate = timeline.agent_rate or 16000
    start = end = None
    for at, piece in timeline.agent_audio:
        if at < start_after or at >= before:
            continue
        if start is None:
            start, end = at, at + piece.size / rate
        elif at - end > BURST_GAP_S:
            break
        else:
            end = at + piece.size / rate
    return (start, end) if start is not None and end is not None else None


def build_result(backend: str, timeline: ReplayTimeline, events: list[TranscriptEvent]) -> dict[str, Any]:
    t0 = timeline.t0
    played = timeline.patient_turns
    turns: list[dict[str, Any]] = []

    patient_texts: list[list[str]] = [[] for _ in played]
    for event in (e for e in events if e.kind == EventKind.PATIENT):
        at = event.at - t0
        candidates = [i for i, p in enumerate(played) if p.speech_start_s <= at]
        if candidates:
            patient_texts[candidates[-1]].append(event.text)
    for turn, texts in zip(played, patient_texts, strict=True):
        turns.append(
            {
                "role": "patient",
                "text": redact(" ".join(texts)),
                "start_s": round(turn.speech_start_s, 3),
                "end_s": round(turn.speech_end_s, 3),
                "disclaimer": False,
            }
        )

    agent_events = [e for e in events if e.kind == EventKind.AGENT]
    for index, event in enumerate(agent_events):
        begin = event.started_at - t0 if event.started_at else event.at - t0
        limit = agent_events[index + 1].started_at - t0 if index + 1 < len(agent_events) else 1e9
        span = _agent_span(timeline, begin - 0.05, limit)
        start_s, end_s = span if span else (begin, begin)
        turns.append(
            {
                "role": "agent",
                "text": redact(event.text),
                "start_s": round(start_s, 3),
                "end_s": round(end_s, 3),
                "disclaimer": event.disclaimer,
            }
        )
    turns.sort(key=lambda t: t["start_s"])

    latency_ms = []
    for index, turn in enumerate(played):
        next_start = played[index + 1].start_s if index + 1 < len(played) else 1e9
        span = _agent_span(timeline, turn.speech_end_s, next_start)
        if span is not None:
            latency_ms.append(round((span[0] - turn.speech_end_s) * 1000, 1))

    escalations = [
        {"level": e.level, "reason": "; ".join(e.reasons), "at_s": round(e.at - t0, 3)}
        for e in events
        if e.kind == EventKind.ESCALATION
    ]
    # The most urgent (an urgent escalation may later be raised to an emergency); each one in order.
    escalation = min(escalations, key=lambda e: Urgency(e["level"]).rank) if escalations else None
    return {
        "backend": backend,
        "turns": turns,
        "escalation": escalation,
        "escalations": escalations,
        "latency_ms": latency_ms,
    }
