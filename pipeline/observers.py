"""Observers: what a session did, read off the frames without touching the pipeline."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    TranscriptionFrame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed

from agent.escalation import EscalationRecord
from pipeline.frames import AgentUtteranceFrame, EscalationFrame
from pipeline.metrics import VOICE_TO_VOICE_SECONDS


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
    """Voice-to-voice latency of every reply into the Prometheus histogram."""

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
            self._turn_ended = False


@dataclass
class TranscriptEvent:
    at: float  # time.monotonic()
    kind: str  # patient | agent | escalation | bot_started | bot_stopped
    text: str = ""
    disclaimer: bool = False
    level: str = ""
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
                self.events.append(TranscriptEvent(now, "patient", frame.text))
        elif isinstance(frame, AgentUtteranceFrame):
            self.events.append(
                TranscriptEvent(
                    now, "agent", frame.text, disclaimer=frame.disclaimer, started_at=frame.started_at
                )
            )
        elif isinstance(frame, EscalationFrame):
            self.events.append(
                TranscriptEvent(now, "escalation", level=frame.level, reasons=list(frame.reasons))
            )
        elif isinstance(frame, BotStartedSpeakingFrame):
            self.events.append(TranscriptEvent(now, "bot_started"))
        else:
            self.events.append(TranscriptEvent(now, "bot_stopped"))


class EscalationObserver(BaseObserver):
    """Hands each escalation record of a session to the clinician queue (``sink``), once."""

    def __init__(self, sink: Callable[[EscalationRecord], Awaitable[None]]) -> None:
        super().__init__()
        self._once = _Once()
        self._sink = sink

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, EscalationFrame) and self._once.first(data) and data.frame.record:
            await self._sink(EscalationRecord.from_dict(data.frame.record))
