"""The safety frame processor: nothing the agent says bypasses it.

It sits between the brain and the voice, and sees both sides of the conversation:

* **the patient's side**: every ``ClinicalStateFrame`` (after each phrase, while the patient
  is still talking, and after each turn), similar-case evidence, and requests for a clinician
  (a button, 0 on the phone). A red flag escalates at once, even while the agent is speaking;
* **the agent's side**: each sentence of the brain's streamed reply passes the language guard
  (no certain diagnosis, no prescribing, no "you don't need a doctor") before Piper speaks it,
  and a turn that assesses or recommends gets the disclaimer when the policy says it is due.

On escalation the agent stops (an interruption), says plainly what happens next (for an
emergency: call the emergency number first), the redacted escalation record is persisted, and
an ``EscalationFrame`` travels both ways: down to the observers (transcript, clinician queue,
the patient's page), up to the brain, which gives no further assessment. From then on each
patient turn is answered here with a line that keeps the patient company until a clinician
joins. A brain failure (``BrainFailedFrame``) escalates too: the agent never falls silent.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time

from pipecat.frames.frames import (
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.processors.frameworks.rtvi.frames import RTVIServerMessageFrame

from agent.backends.base import CameraImage, RetrievedCase
from agent.channel import Channel
from agent.disclaimer import DisclaimerPolicy
from agent.escalation import (
    EscalationRecord,
    EscalationStore,
    awaiting_clinician_message,
    escalation_message,
)
from agent.facts import ClinicalFacts
from agent.interview import spoken_summary
from agent.language_guard import guard
from agent.pii import redact
from agent.policy import Assessment, Policy, Urgency, default_policy
from pipeline.frames import (
    AgentUtteranceFrame,
    BrainFailedFrame,
    CameraStillFrame,
    ClinicalStateFrame,
    ClinicianJoinedFrame,
    ClinicianLeftFrame,
    ClinicianRequestFrame,
    EscalationFrame,
    EscalationResolvedFrame,
    SimilarCasesFrame,
    SummaryRequestFrame,
)
from pipeline.metrics import ESCALATIONS_TOTAL, PREDICTION_CONFIDENCE
from pipeline.second_opinion import SecondOpinionFrame

log = logging.getLogger(__name__)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
FAILURE_PREFIX = "I'm sorry, I'm having a technical problem and can't continue the assessment."


class SafetyProcessor(FrameProcessor):
    def __init__(
        self,
        *,
        session_id: str,
        store: EscalationStore,
        emergency_number: str = "911",
        channel: Channel = Channel.VIDEO,
        disclaimer_every_turns: int = 3,
        policy: Policy | None = None,
        malignant_share: float = 0.5,
        reassure_every_s: float = 45.0,
        repeat_emergency_after_s: float = 180.0,
    ) -> None:
        super().__init__()
        self._session_id = session_id
        self._store = store
        self._emergency_number = emergency_number
        self._channel = channel
        self._policy = policy or default_policy()
        self._malignant_share = malignant_share
        self._disclaimers = DisclaimerPolicy(disclaimer_every_turns)
        self._facts = ClinicalFacts()
        self._evidence: set[str] = set()
        self._cases: list[RetrievedCase] = []
        self._best_image: CameraImage | None = None
        self._transcript: list[tuple[str, str]] = []  # in memory only; redacted when stored
        self._escalation: Assessment | None = None
        self._record_id = ""
        self._escalated_at = 0.0
        self._clinician: str | None = None
        self._waiting_task: asyncio.Task | None = None
        self._reassure_every_s = reassure_every_s
        self._repeat_emergency_after_s = repeat_emergency_after_s
        self._company_lines = 0
        self._pending = ""
        self._reply: list[str] = []
        self._reply_started = 0.0

    @property
    def escalation(self) -> Assessment | None:
        return self._escalation

    async def cleanup(self) -> None:
        if self._waiting_task is not None:
            await self.cancel_task(self._waiting_task)
        await super().cleanup()

    # --- frames -------------------------------------------------------------------------

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, ClinicalStateFrame):
            await self.push_frame(frame, direction)
            await self._on_state(frame)
            if frame.final and not frame.text and self._escalation and not self._clinician:
                await self._keep_company()  # speech with no words in it is a turn too: answer it
        elif isinstance(frame, SimilarCasesFrame):
            await self.push_frame(frame, direction)
            await self._on_similar_cases(frame.cases)
        elif isinstance(frame, CameraStillFrame):
            self._best_image = frame.image or self._best_image
            await self.push_frame(frame, direction)
        elif isinstance(frame, TranscriptionFrame) and frame.finalized:
            await self.push_frame(frame, direction)
            self._transcript.append(("patient", frame.text))
            if self._escalation and not self._clinician:
                await self._keep_company()
        elif isinstance(frame, ClinicianRequestFrame):
            await self._escalate(Assessment.requested(frame.how))
        elif isinstance(frame, ClinicianJoinedFrame):
            await self._on_clinician_joined(frame.clinician)
        elif isinstance(frame, SummaryRequestFrame):
            await self._speak(f"Here is what the patient has told me. {spoken_summary(self._facts)}")
        elif isinstance(frame, ClinicianLeftFrame):
            await self._on_clinician_left(frame.clinician, frame.outcome)
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._pending, self._reply, self._reply_started = "", [], time.monotonic()
            if not self._escalation:
                await self.push_frame(frame, direction)
        elif isinstance(frame, LLMTextFrame):
            if not self._escalation:
                await self._on_agent_text(frame.text)
        elif isinstance(frame, LLMFullResponseEndFrame):
            if not self._escalation:
                await self._finish_reply()
                await self.push_frame(frame, direction)
        elif isinstance(frame, BrainFailedFrame):
            log.error("brain failure (%s): escalating", frame.reason)
            await self._escalate(Assessment.failed(frame.reason), spoken_prefix=FAILURE_PREFIX)
        elif isinstance(frame, SecondOpinionFrame):
            await self.push_frame(frame, direction)
            await self._escalate(frame.assessment(self._policy.escalate_from))
        else:
            await self.push_frame(frame, direction)

    # --- the patient's side ----------------------------------------------------------------

    async def _on_state(self, frame: ClinicalStateFrame) -> None:
        if frame.final:
            self._facts = frame.facts
        assessment = frame.assessment or self._policy.assess(frame.facts)
        if self._evidence:  # similar cases may raise the level the words alone reached
            with_evidence = self._policy.assess(frame.facts, self._evidence)
            if with_evidence.level.rank < assessment.level.rank:
                assessment = with_evidence
        if frame.final:
            PREDICTION_CONFIDENCE.observe(assessment.confidence)
        if assessment.escalate:
            # The words that met the red flag reach the record even though the turn is not over.
            await self._escalate(assessment, trigger=frame.text)

    async def _on_similar_cases(self, cases: list[RetrievedCase]) -> None:
        """Similar cases dominated by malignant labels raise urgency; benign ones never lower it."""
        from rag.malignancy import malignant_share

        self._cases = list(cases)
        if cases and malignant_share(cases) >= self._malignant_share:
            self._evidence.add("retrieval_malignant")
            assessment = self._policy.assess(self._facts, self._evidence)
            if assessment.escalate:
                await self._escalate(assessment)

    # --- the agent's side ----------------------------------------------------------------

    async def _on_agent_text(self, text: str) -> None:
        self._pending += text
        *complete, self._pending = SENTENCE_END.split(self._pending)
        for sentence in complete:
            await self._say(sentence)

    async def _say(self, sentence: str) -> None:
        sentence = sentence.strip()
        if not sentence:
            return
        guarded = guard(sentence)
        if guarded.changes:
            log.info("language guard: %s", ",".join(guarded.changes))
        self._reply.append(guarded.text)
        await self.push_frame(LLMTextFrame(guarded.text + " "))

    async def _finish_reply(self) -> None:
        await self._say(self._pending)
        self._pending = ""
        text = " ".join(self._reply)
        disclaimer = self._disclaimers.disclaimer_for(text)
        if disclaimer:
            await self.push_frame(LLMTextFrame(disclaimer))
            text = f"{text} {disclaimer}".strip()
        await self._record_agent(text, self._disclaimers.carries_disclaimer(text))

    async def _record_agent(self, text: str, disclaimer: bool) -> None:
        self._transcript.append(("agent", text))
        await self.broadcast_frame(
            AgentUtteranceFrame, text=text, disclaimer=disclaimer, started_at=self._reply_started
        )

    async def _speak(self, text: str) -> None:
        """Say something of the safety processor's own, as one agent turn."""
        self._reply_started = time.monotonic()
        await self.push_frame(LLMFullResponseStartFrame())
        await self.push_frame(LLMTextFrame(text))
        await self.push_frame(LLMFullResponseEndFrame())
        await self._record_agent(text, self._disclaimers.carries_disclaimer(text))

    # --- escalation ---------------------------------------------------------------------

    async def _escalate(self, assessment: Assessment, spoken_prefix: str = "", trigger: str = "") -> None:
        if self._escalation:
            if assessment.level.rank < self._escalation.level.rank:
                # Already escalated, and now it is more urgent (an emergency): say so, and the
                # clinician's record of the same escalation says so too.
                self._escalation = assessment
                message = escalation_message(assessment.level, self._emergency_number)
                await self._raise_alarm(assessment, message, trigger, raised=True)
            return
        self._escalation = assessment
        self._escalated_at = time.monotonic()
        message = f"{spoken_prefix} {escalation_message(assessment.level, self._emergency_number)}".strip()
        await self._raise_alarm(assessment, message, trigger)
        if not self._clinician:
            self._waiting_task = self.create_task(self._reassure_while_waiting(), "reassure-while-waiting")

    async def _raise_alarm(
        self, assessment: Assessment, message: str, trigger: str, *, raised: bool = False
    ) -> None:
        """Stop the agent, tell the patient what happens next, store the record, tell the clinicians."""
        await self.broadcast_interruption()  # the agent stops mid-sentence
        level = assessment.level.value
        ESCALATIONS_TOTAL.labels(level=level).inc()
        log.warning(
            "escalation%s: level=%s rules=%s",
            " raised" if raised else "",
            level,
            ",".join(assessment.rule_ids),
        )
        await self.push_frame(
            RTVIServerMessageFrame(data={"type": "escalation", "level": level, "message": message})
        )
        record = self._record(assessment, trigger)
        if raised:
            record.id = self._record_id  # the queue refreshes the escalation it already has
        self._record_id = record.id
        await self._speak(message)
        try:
            await asyncio.to_thread(self._store.save, record)
        except OSError:
            log.exception("could not persist escalation %s", record.id)  # what the patient hears already ran
        reasons = [reason.description for reason in assessment.reasons]
        await self.broadcast_frame(EscalationFrame, level=level, reasons=reasons, record=record.to_dict())

    def _record(self, assessment: Assessment, trigger: str) -> EscalationRecord:
        image = self._best_image
        transcript = self._transcript + ([("patient", trigger)] if trigger else [])
        return EscalationRecord.create(
            session_id=self._session_id,
            level=assessment.level.value,
            reasons=[reason.description for reason in assessment.reasons],
            rule_ids=assessment.rule_ids,
            summary=redact(self._facts.summary()),
            transcript=[(role, redact(text)) for role, text in transcript],
            channel=self._channel,
            similar_cases=[
                {"case_id": c.case_id, "labels": c.labels, "distance": c.distance, "matched_on": c.matched_on}
                for c in self._cases
            ],
            best_frame_jpeg_b64=base64.b64encode(image.jpeg).decode() if image else None,
        )

    async def _keep_company(self) -> None:
        assert self._escalation is not None
        self._company_lines += 1
        line = awaiting_clinician_message(self._company_lines, self._escalation.level, self._emergency_number)
        waited = time.monotonic() - self._escalated_at
        if waited >= self._repeat_emergency_after_s and self._escalation.level != Urgency.EMERGENCY:
            line += f" If you feel worse while you wait, please call {self._emergency_number}."
        await self._speak(line)

    async def _reassure_while_waiting(self) -> None:
        """While no clinician has joined, a word every so often: the patient is not forgotten."""
        while self._escalation and not self._clinician:
            await asyncio.sleep(self._reassure_every_s)
            quiet_for = time.monotonic() - max(self._reply_started, self._escalated_at)
            if self._escalation and not self._clinician and quiet_for >= self._reassure_every_s:
                await self._keep_company()

    # --- a clinician in the room ----------------------------------------------------------

    async def _on_clinician_joined(self, name: str) -> None:
        self._clinician = name
        if self._waiting_task is not None:
            await self.cancel_task(self._waiting_task)
            self._waiting_task = None
        await self.broadcast_interruption()
        await self.push_frame(
            RTVIServerMessageFrame(data={"type": "clinician", "status": "joined", "name": name})
        )
        await self._speak(f"{name} is joining now. I'll stay quiet while you talk.")

    async def _on_clinician_left(self, name: str, outcome: str) -> None:
        self._clinician = None
        data = {"type": "clinician", "status": "left", "outcome": outcome}
        await self.push_frame(RTVIServerMessageFrame(data=data))
        if outcome == "ended":
            await self._speak("Thank you for talking with us today. This session is ending now. Take care.")
            return
        self._escalation = None  # the clinician has seen the patient: the interview may go on
        await self.push_frame(EscalationResolvedFrame(), FrameDirection.UPSTREAM)
        await self._speak(
            f"Thank you, {name}. I'm back with you. Is there anything else you'd like to tell me?"
        )


__all__ = ["SafetyProcessor", "Urgency"]
