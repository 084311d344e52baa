"""The clinician-presence processor: the patient is never alone between an escalation and a person.

It follows the escalation (the ``EscalationFrame``s the escalation processor broadcasts) and the
room (a clinician joining, asking for a summary, leaving), and says the agent's lines for them:

* **waiting for a clinician**: each patient turn (words, or speech with no words in it) gets a
  line that keeps the patient company without assessing; silence gets one every
  ``reassure_every_s``; after ``repeat_emergency_after_s`` the emergency advice is repeated;
* **a clinician joins**: the agent stops, announces them, and stays quiet (the brain is
  escalated, so it does not answer);
* **the clinician asks for a summary**: what the patient has said, as the interview summarises it;
* **the clinician leaves**: on hand-back the interview resumes (an ``EscalationResolvedFrame``
  goes upstream to the escalation processor, the second opinion and the brain); on end, goodbye.

The patient's page is told as the clinician comes and goes. Lines go out as ``AgentLineFrame``:
the spoken guard says them as written.

Company starts once the escalation's own message has passed here (the escalation processor's
``AgentLineFrame``), in the order the patient hears things: an ``EscalationFrame`` is a system
frame and overtakes a turn still on its way, which must not get a company line before the
patient has been told a clinician is coming.
"""

from __future__ import annotations

import asyncio
import time

from pipecat.frames.frames import Frame, TranscriptionFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.processors.frameworks.rtvi.frames import RTVIServerMessageFrame

from agent.escalation import awaiting_clinician_message
from agent.facts import ClinicalFacts
from agent.interview import spoken_summary
from agent.policy import Urgency
from pipeline.frames import (
    AgentLineFrame,
    AgentUtteranceFrame,
    ClinicalStateFrame,
    ClinicianExit,
    ClinicianJoinedFrame,
    ClinicianLeftFrame,
    EscalationFrame,
    EscalationResolvedFrame,
    SummaryRequestFrame,
)


class ClinicianPresenceProcessor(FrameProcessor):
    def __init__(
        self,
        *,
        emergency_number: str = "911",
        reassure_every_s: float = 45.0,
        repeat_emergency_after_s: float = 180.0,
    ) -> None:
        super().__init__()
        self._emergency_number = emergency_number
        self._reassure_every_s = reassure_every_s
        self._repeat_emergency_after_s = repeat_emergency_after_s
        self._level: Urgency | None = None  # the escalation's level while one is open
        self._told = False  # the escalation's message has passed on its way to the voice
        self._escalated_at = 0.0
        self._last_said_at = 0.0
        self._clinician: str | None = None
        self._facts = ClinicalFacts()
        self._company_lines = 0
        self._waiting_task: asyncio.Task | None = None

    async def cleanup(self) -> None:
        await self._stop_waiting()
        await super().cleanup()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, ClinicianJoinedFrame):
            await self._on_clinician_joined(frame.clinician)
        elif isinstance(frame, SummaryRequestFrame):
            await self._say(f"Here is what the patient has told me. {spoken_summary(self._facts)}")
        elif isinstance(frame, ClinicianLeftFrame):
            await self._on_clinician_left(frame.clinician, frame.outcome)
        else:
            await self.push_frame(frame, direction)
            if isinstance(frame, EscalationFrame) and direction == FrameDirection.DOWNSTREAM:
                await self._on_escalation(frame.level)
            elif isinstance(frame, AgentLineFrame) and self._level is not None:
                self._told = True  # the escalation processor's message: the patient knows
            elif isinstance(frame, AgentUtteranceFrame) and direction == FrameDirection.UPSTREAM:
                self._last_said_at = max(self._last_said_at, frame.started_at)
            elif isinstance(frame, ClinicalStateFrame) and frame.final and not frame.revised:
                self._facts = frame.facts
                if not frame.text and self._waiting():
                    await self._keep_company()  # speech with no words in it is a turn too: answer it
            elif isinstance(frame, TranscriptionFrame) and frame.finalized and self._waiting():
                await self._keep_company()

    def _waiting(self) -> bool:
        return self._level is not None and self._told and self._clinician is None

    # --- waiting for a clinician ------------------------------------------------------------

    async def _on_escalation(self, level: Urgency) -> None:
        if self._level is not None:  # the same escalation, raised
            self._level = level if level.rank < self._level.rank else self._level
            self._last_said_at = time.monotonic()
            return
        self._level, self._told = level, False
        self._escalated_at = self._last_said_at = time.monotonic()
        await self._stop_waiting()
        if self._clinician is None:
            self._waiting_task = self.create_task(self._reassure_while_waiting(), "reassure-while-waiting")

    async def _keep_company(self) -> None:
        assert self._level is not None
        self._company_lines += 1
        line = awaiting_clinician_message(self._company_lines, self._level, self._emergency_number)
        waited = time.monotonic() - self._escalated_at
        if waited >= self._repeat_emergency_after_s and self._level != Urgency.EMERGENCY:
            line += f" If you feel worse while you wait, please call {self._emergency_number}."
        await self._say(line)

    async def _reassure_while_waiting(self) -> None:
        """While no clinician has joined, a word every so often: the patient is not forgotten."""
        while self._level is not None and self._clinician is None:
            await asyncio.sleep(self._reassure_every_s)
            if self._waiting() and time.monotonic() - self._last_said_at >= self._reassure_every_s:
                await self._keep_company()

    async def _stop_waiting(self) -> None:
        task, self._waiting_task = self._waiting_task, None
        if task is not None:
            await self.cancel_task(task)

    # --- a clinician in the room ----------------------------------------------------------

    async def _on_clinician_joined(self, name: str) -> None:
        self._clinician = name
        await self._stop_waiting()
        await self.broadcast_interruption()
        await self.push_frame(
            RTVIServerMessageFrame(data={"type": "clinician", "status": "joined", "name": name})
        )
        await self._say(f"{name} is joining now. I'll stay quiet while you talk.")

    async def _on_clinician_left(self, name: str, outcome: ClinicianExit) -> None:
        self._clinician = None
        data = {"type": "clinician", "status": "left", "outcome": outcome.value}
        await self.push_frame(RTVIServerMessageFrame(data=data))
        if outcome == ClinicianExit.ENDED:
            self._level = None  # nobody is coming any more: no more promises of a clinician
            await self._stop_waiting()
            await self._say("Thank you for talking with us today. This session is ending now. Take care.")
            return
        self._level, self._told = None, False  # the clinician has seen the patient: the interview goes on
        await self.push_frame(EscalationResolvedFrame(), FrameDirection.UPSTREAM)
        await self._say(
            f"Thank you, {name}. I'm back with you. Is there anything else you'd like to tell me?"
        )

    async def _say(self, text: str) -> None:
        self._last_said_at = time.monotonic()
        await self.push_frame(AgentLineFrame(text=text))
