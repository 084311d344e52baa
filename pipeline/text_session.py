"""A session driven by text instead of audio: the agent half of the pipeline, turn by turn.

The same processors as a live session, from triage through the brain to the safety processors
(escalation, clinician presence, spoken guard), fed with finished patient turns as
transcriptions. Evaluations use it to run many scenarios fast; the audio path
(``tools.replay``) checks the same scenarios through speech.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from pipecat.frames.frames import EndFrame, Frame, TranscriptionFrame
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.utils.time import time_now_iso8601

from agent.policy import Urgency
from agent.simulator import SimulatedPatient
from pipeline.frames import AgentUtteranceFrame, EscalationFrame, Heard, UnclearSpeechFrame
from pipeline.observers import TranscriptEvent, TranscriptObserver
from pipeline.session import run_worker


class Patient(Protocol):
    """Who the text session talks to (``agent.simulator.SimulatedPatient``, or one heard through speech)."""

    def first(self) -> str | Heard | None: ...

    def reply(self, agent_said: str, *, escalated: bool = False) -> str | Heard | None: ...


def _patient_frame(said: str | Heard) -> Frame:
    if isinstance(said, Heard) and not said.text:
        return UnclearSpeechFrame()
    text = said.text if isinstance(said, Heard) else said
    result = said if isinstance(said, Heard) else None
    return TranscriptionFrame(
        text=text, user_id="patient", timestamp=time_now_iso8601(), finalized=True, result=result
    )


class _AgentTurns(FrameProcessor):
    """Counts the agent's finished turns, so the driver knows when to send the next one."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.texts: list[str] = []
        self.escalated = False
        self.changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, AgentUtteranceFrame):
            self.count += 1
            self.texts.append(frame.text)
            self.changed.set()
        elif isinstance(frame, EscalationFrame):
            self.escalated = True
        await self.push_frame(frame, direction)

    async def wait_beyond(self, count: int, timeout_s: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.count <= count:
            self.changed.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=remaining)
            except TimeoutError:
                return


@dataclass
class TextSessionResult:
    events: list[TranscriptEvent] = field(default_factory=list)

    @property
    def escalation(self) -> TranscriptEvent | None:
        """The most urgent escalation of the session (an urgent one may be raised to an emergency)."""
        raised = [e for e in self.events if e.kind == "escalation"]
        return min(raised, key=lambda e: Urgency(e.level).rank) if raised else None

    @property
    def agent_turns(self) -> list[TranscriptEvent]:
        return [e for e in self.events if e.kind == "agent"]


async def run_text_session(
    processors: list[FrameProcessor],
    turns: list[str] | Patient,
    *,
    observers: list[BaseObserver] | None = None,
    reply_timeout_s: float = 30.0,
) -> TextSessionResult:
    """Play ``turns`` through ``processors`` as finished patient turns, each after the agent's answer.

    ``processors`` are a session's text half, as the composition root builds it
    (``SessionHost.text_processors``), watched by the same ``observers`` as its spoken sessions
    (``SessionHost.observers``: escalations to the clinician queue). ``turns`` is a fixed list,
    or a patient who answers what the agent asks: with words, or with what a recogniser made of
    them (``Heard``, its confidence included; no words at all is speech the agent could not
    understand).
    """
    patient = SimulatedPatient(tuple(turns), max_answers=0) if isinstance(turns, list) else turns
    sink = _AgentTurns()
    transcript = TranscriptObserver()
    pipeline = Pipeline([*processors, sink])
    watchers = [transcript, *(observers or [])]
    worker = PipelineWorker(pipeline, observers=watchers, idle_timeout_secs=None, enable_rtvi=False)

    async def drive() -> None:
        await sink.wait_beyond(0, reply_timeout_s)  # the greeting
        said = patient.first()
        while said is not None:
            seen = sink.count
            await worker.queue_frame(_patient_frame(said))
            await sink.wait_beyond(seen, reply_timeout_s)
            await asyncio.sleep(0.05)  # let a reply and an escalation racing it both land
            said = patient.reply(" ".join(sink.texts[seen:]), escalated=sink.escalated)
        await worker.queue_frame(EndFrame())

    driver = asyncio.create_task(drive())
    await run_worker(worker)
    await driver
    return TextSessionResult(events=transcript.events)
