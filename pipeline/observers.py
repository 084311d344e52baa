"""Observers: what a session did, read off the frames without touching the pipeline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    TranscriptionFrame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed

from agent.escalation import EscalationRecord
from agent.policy import Urgency
from pipeline.frames import AgentUtteranceFrame, EscalationFrame
from pipeline.metrics import ESCALATION_FAILURES_TOTAL, PREDICTION_LATENCY_MS, VOICE_TO_VOICE_SECONDS

log = logging.getLogger(__name__)
# How long a session's clean-up waits for escalation hand-offs still under way.
CLEANUP_WAIT_S = 10.0


class _Once:
    """Frames are pushed once per hop and broadcast in pairs: see each only once."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def first(self, data: FramePushed) -> bool:
        frame = data.frame
        if frame.id in self._seen:
            return False
        self._seen.add(frame.id)
        sibling = getattr(frame, "broadcast_sibling_id", None)
        if sibling is not None:
            if sibling in self._seen:
                return False
            self._seen.add(sibling)
        return True


class VoiceLatencyObserver(BaseObserver):
    """Voice-to-voice latency of every reply into the Prometheus histograms (seconds, and milliseconds)."""

    def __init__(self) -> None:
        super().__init__()
        self._once = _Once()
        self._speech_end: float | None = None
        self._turn_ended = False
        self.latencies_s: list[float] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if not isinstance(
            frame, (VADUserStoppedSpeakingFrame, UserStoppedSpeakingFrame, BotStartedSpeakingFrame)
        ) or not self._once.first(data):
            return
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speech_end = time.monotonic() - frame.stop_secs
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._turn_ended = True
        elif self._turn_ended and self._speech_end is not None:
            latency = time.monotonic() - self._speech_end
            self.latencies_s.append(latency)
            VOICE_TO_VOICE_SECONDS.observe(latency)
            PREDICTION_LATENCY_MS.observe(latency * 1000.0)  # the runbook's name and unit
            self._turn_ended = False


class EventKind(StrEnum):
    """What a transcript event is: a side speaking, an escalation, the agent's voice starting or stopping."""

    PATIENT = "patient"
    AGENT = "agent"
    ESCALATION = "escalation"
    BOT_STARTED = "bot_started"
    BOT_STOPPED = "bot_stopped"


@dataclass
class TranscriptEvent:
    at: float  # time.monotonic()
    kind: EventKind
    text: str = ""
    disclaimer: bool = False
    level: Urgency | None = None  # an escalation's
    reasons: list[str] = field(default_factory=list)
    started_at: float = 0.0


class TranscriptObserver(BaseObserver):
    """The session as a list of events: what each side said, and any escalation."""

    def __init__(self) -> None:
        super().__init__()
        self._once = _Once()
        self.events: list[TranscriptEvent] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        kinds = (
            TranscriptionFrame,
            AgentUtteranceFrame,
            EscalationFrame,
            BotStartedSpeakingFrame,
            BotStoppedSpeakingFrame,
        )
        if not isinstance(frame, kinds) or not self._once.first(data):
            return
        now = time.monotonic()
        if isinstance(frame, TranscriptionFrame):
            if frame.finalized:
                self.events.append(TranscriptEvent(now, EventKind.PATIENT, frame.text))
        elif isinstance(frame, AgentUtteranceFrame):
            self.events.append(
                TranscriptEvent(
                    now, EventKind.AGENT, frame.text, disclaimer=frame.disclaimer, started_at=frame.started_at
                )
            )
        elif isinstance(frame, EscalationFrame):
            self.events.append(
                TranscriptEvent(now, EventKind.ESCALATION, level=frame.level, reasons=list(frame.reasons))
            )
        elif isinstance(frame, BotStartedSpeakingFrame):
            self.events.append(TranscriptEvent(now, EventKind.BOT_STARTED))
        else:
            self.events.append(TranscriptEvent(now, EventKind.BOT_STOPPED))


class EscalationObserver(BaseObserver):
    """Hands each escalation record of a session to the clinician queue (``sink``), once.

    The queue stores what it is handed (and every change a clinician makes to it); a session
    assembled with this observer gives its escalation processor no store of its own
    (``SessionContext.escalations_queued``): one escalation, one stored record.

    Each hand-off settles the frame's receipt (``HandOff``): taken, or refused when the queue
    raised (logged by record id only; the escalation processor counts it and stays free to
    escalate again). A hand-off runs as a task of its own, so a session cancelled meanwhile (the
    patient hung up) does not cut it short, and the session's clean-up waits for it
    (``CLEANUP_WAIT_S`` at most).
    """

    def __init__(self, sink: Callable[[EscalationRecord], Awaitable[None]]) -> None:
        super().__init__()
        self._once = _Once()
        self._sink = sink
        self._handing: set[asyncio.Task[None]] = set()

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if isinstance(frame, EscalationFrame) and self._once.first(data):
            task = asyncio.ensure_future(self._hand_off(frame))
            self._handing.add(task)
            task.add_done_callback(self._handing.discard)
            await asyncio.shield(task)

    async def _hand_off(self, frame: EscalationFrame) -> None:
        try:
            await self._sink(frame.record)
        except Exception as exc:  # noqa: BLE001 - a queue that fails must not end the session's hand-offs
            why = type(exc).__name__
            log.error("escalation %s not handed to the clinician queue: %s", frame.record.id, why)
            if frame.handoff is not None:
                frame.handoff.refused()
            else:
                ESCALATION_FAILURES_TOTAL.labels(stage="handoff").inc()
            return
        if frame.handoff is not None:
            frame.handoff.taken()

    async def cleanup(self) -> None:
        await super().cleanup()
        if self._handing:
            await asyncio.wait(set(self._handing), timeout=CLEANUP_WAIT_S)
