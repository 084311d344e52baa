"""The escalation processor: a red flag met is a clinician called, at once and never silently.

It reads the turn's one assessment where it travels (``ClinicalStateFrame``: after each phrase,
while the patient is still talking, and after each turn) and the other ways an escalation is
asked for: the model's second opinion (``SecondOpinionFrame``), a brain that failed
(``BrainFailedFrame``), a patient who pressed the button or 0 (``ClinicianRequestFrame``). It
never assesses anything itself.

On escalation the redacted ``EscalationRecord`` is made and broadcast first, in an
``EscalationFrame``: downstream to the observers (transcript, clinician queue, the patient's
page), upstream to the brain, which gives no further assessment. Then the agent stops (an
interruption), the patient's page is told, and the agent says plainly what happens next (for an
emergency: call the emergency number first). While escalated, the brain's replies racing the
escalation are dropped here. An escalation is raised, not repeated: an emergency after an urgent
escalation is said, and comes again under the same record id. A clinician's hand-back
(``EscalationResolvedFrame``, from the clinician-presence processor) lets the interview go on.

Fail-safe (``docs/safety.md``): the record goes out before anything that can fail or be cut
short, so a session cancelled mid-escalation (the patient hung up) has still called a
clinician; a record that cannot be built (redaction, the summary) goes out minimal (level, rule
ids, session id, no words); and the session counts as escalated only once the record has been
taken (the frame's ``HandOff`` receipt). One that nobody took is logged and counted
(``escalation_failures_total``), the patient is still told, and the next red flag tries again.
A processor failing anywhere in the session comes here too (``ProcessorFailedFrame``, from
``pipeline/fail_safe.py``) and escalates like a failed brain.

Who takes the record is decided when the session is assembled, once: a session the product
builds (``web/product.py``: the server, the phone bridge, a replay, the evaluation) hands its
records to the clinician queue, which stores each one and every change a clinician makes to it,
so this processor gets no ``store``. A session assembled without a queue (a unit test, a
pipeline used as a library) gives it a ``store``, and storing the record is its hand-off.
"""

from __future__ import annotations

import asyncio
import base64
import logging

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
from agent.escalation import EscalationRecord, EscalationStore, escalation_message
from agent.facts import ClinicalFacts
from agent.pii import redact
from agent.policy import Assessment, Urgency
from pipeline.frames import (
    AgentLineFrame,
    AgentUtteranceFrame,
    BrainFailedFrame,
    CameraStillFrame,
    ClinicalStateFrame,
    ClinicianRequestFrame,
    EscalationFrame,
    EscalationResolvedFrame,
    HandOff,
    ProcessorFailedFrame,
    SimilarCasesFrame,
)
from pipeline.metrics import (
    ESCALATION_FAILURES_TOTAL,
    ESCALATIONS_TOTAL,
    PREDICTION_CONFIDENCE,
    EscalationCause,
)
from pipeline.second_opinion import SecondOpinionFrame

log = logging.getLogger(__name__)
FAILURE_PREFIX = "I'm sorry, I'm having a technical problem and can't continue the assessment."
BRAIN_REPLY = (LLMFullResponseStartFrame, LLMTextFrame, LLMFullResponseEndFrame)
# How long a record may take to be taken (the queue, or the store) before it counts as not taken
# and the patient is told anyway; the queue takes one in milliseconds.
HANDOFF_TIMEOUT_S = 5.0


class EscalationProcessor(FrameProcessor):
    def __init__(
        self,
        *,
        session_id: str,
        store: EscalationStore | None = None,
        emergency_number: str = "911",
        channel: Channel = Channel.VIDEO,
        escalate_from: Urgency = Urgency.URGENT,
        handoff_timeout_s: float = HANDOFF_TIMEOUT_S,
        resumes_record: str | None = None,
    ) -> None:
        """``resumes_record``: the escalation a session cut off had raised, when this session
        resumes it (``pipeline/resume.py``). Its facts raise it again at the first turn, as that
        record (the queue refreshes it: the clinician's claim stays), never as a second one."""
        super().__init__()
        self._session_id = session_id
        self._resumes_record = resumes_record
        self._store = store
        self._emergency_number = emergency_number
        self._channel = channel
        self._escalate_from = escalate_from  # the policy's: a second opinion escalates from the same level
        self._facts = ClinicalFacts()
        self._cases: list[RetrievedCase] = []
        self._best_image: CameraImage | None = None
        self._transcript: list[tuple[str, str]] = []  # in memory only; redacted when recorded
        self._escalation: Assessment | None = None
        self._record: EscalationRecord | None = None
        self._escalating = asyncio.Lock()
        self._handoff_timeout_s = handoff_timeout_s

    @property
    def escalation(self) -> Assessment | None:
        """The assessment the session is escalated on (None when it is not)."""
        return self._escalation

    # --- frames -------------------------------------------------------------------------

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, ClinicalStateFrame):
            await self.push_frame(frame, direction)
            await self._on_state(frame)
        elif isinstance(frame, SecondOpinionFrame):
            await self.push_frame(frame, direction)
            await self._escalate(frame.assessment(self._escalate_from), EscalationCause.SECOND_OPINION)
        elif isinstance(frame, BrainFailedFrame):
            log.error("brain failure (%s): escalating", frame.reason)
            await self._escalate(
                Assessment.failed(frame.reason), EscalationCause.BRAIN_FAILURE, spoken_prefix=FAILURE_PREFIX
            )
        elif isinstance(frame, ProcessorFailedFrame):
            log.error("processor failure (%s): escalating", frame.reason)
            failed = Assessment.failed(frame.reason)
            await self._escalate(failed, EscalationCause.PROCESSOR_FAILURE, spoken_prefix=FAILURE_PREFIX)
        elif isinstance(frame, ClinicianRequestFrame):
            await self._escalate(Assessment.requested(frame.how), EscalationCause.PATIENT_REQUEST)
        elif isinstance(frame, BRAIN_REPLY) and direction == FrameDirection.DOWNSTREAM:
            if not self._escalation:  # escalated: the brain's reply racing it is not said
                await self.push_frame(frame, direction)
        elif isinstance(frame, EscalationResolvedFrame):
            self._escalation = None  # a clinician has seen the patient: the interview may go on
            self._record = None
            await self.push_frame(frame, direction)
        else:
            await self._remember(frame, direction)
            await self.push_frame(frame, direction)

    async def _remember(self, frame: Frame, direction: FrameDirection) -> None:
        """What the record needs: both sides' words, the similar cases, the best camera frame."""
        if isinstance(frame, TranscriptionFrame) and frame.finalized:
            self._transcript.append(("patient", frame.text))
        elif isinstance(frame, AgentUtteranceFrame) and direction == FrameDirection.UPSTREAM:
            self._transcript.append(("agent", frame.text))
        elif isinstance(frame, SimilarCasesFrame):
            self._cases = list(frame.cases)
        elif isinstance(frame, CameraStillFrame):
            self._best_image = frame.image or self._best_image

    async def _on_state(self, frame: ClinicalStateFrame) -> None:
        if frame.final:
            self._facts = frame.facts
        assessment = frame.assessment
        if assessment is None:
            return
        if frame.final and not frame.revised:
            PREDICTION_CONFIDENCE.observe(assessment.confidence)
        if assessment.escalate:
            # The words that met the red flag reach the record even though the turn is not over.
            trigger = "" if frame.revised else frame.text
            await self._escalate(assessment, EscalationCause.RED_FLAG, trigger=trigger)

    # --- escalation ---------------------------------------------------------------------

    async def _escalate(
        self, assessment: Assessment, cause: EscalationCause, spoken_prefix: str = "", trigger: str = ""
    ) -> None:
        # One at a time: a system frame (a keypad 0, a processor failure) may ask while a state's
        # escalation is still being handed off.
        async with self._escalating:
            if self._escalation:
                if assessment.level.rank < self._escalation.level.rank:
                    # Already escalated, and now it is more urgent (an emergency): say so, and the
                    # clinician's record of the same escalation says so too.
                    message = escalation_message(assessment.level, self._emergency_number)
                    await self._raise_alarm(assessment, cause, message, trigger)
                return
            message = escalation_message(assessment.level, self._emergency_number)
            await self._raise_alarm(assessment, cause, f"{spoken_prefix} {message}".strip(), trigger)

    async def _raise_alarm(
        self, assessment: Assessment, cause: EscalationCause, message: str, trigger: str
    ) -> None:
        """Hand the record to the clinicians first, then stop the agent and tell the patient.

        The hand-off comes before anything that can fail or be cut short (the interruption, the
        page message, the speech): a session that ends there has still called a clinician. The
        session counts as escalated only once the record has been taken.
        """
        level = assessment.level
        record = self._record_for(assessment, trigger)
        raised = self._record is not None
        if await self._hand_off(record, assessment):
            self._escalation, self._record = assessment, record
            ESCALATIONS_TOTAL.labels(level=level.value, cause=cause.value).inc()
        rules = ",".join(assessment.rule_ids)
        log.warning("escalation%s: level=%s rules=%s", " raised" if raised else "", level.value, rules)
        # Said whether or not a clinician took it: the emergency advice is the patient's to hear.
        await self.broadcast_interruption()  # the agent stops mid-sentence
        await self.push_frame(
            RTVIServerMessageFrame(data={"type": "escalation", "level": level.value, "message": message})
        )
        await self.push_frame(AgentLineFrame(text=message))

    async def _hand_off(self, record: EscalationRecord, assessment: Assessment) -> bool:
        """Send the record out and wait until it is taken: True when it is, False (logged, counted) if not.

        With a clinician queue, taking it is the queue's (``EscalationObserver`` settles the
        frame's receipt); without one, it is this processor's store. A cancellation while waiting
        (the patient hung up) does not stop the hand-off: the observer finishes it, and the
        session counts as escalated once it is taken.
        """
        handoff = HandOff()
        # The escalation before its message: whatever follows the message knows of the escalation.
        await self.broadcast_frame(EscalationFrame, record=record, handoff=handoff)
        if self._store is not None:
            saving = asyncio.ensure_future(asyncio.to_thread(self._store.save, record))
            saving.add_done_callback(lambda done: _settle(handoff, done))
        try:
            taken = await handoff.wait(self._handoff_timeout_s)
        except asyncio.CancelledError:
            handoff.settled.add_done_callback(lambda done: self._taken_late(done, record, assessment))
            raise
        if not taken:
            stage = "store" if self._store is not None else "handoff"
            ESCALATION_FAILURES_TOTAL.labels(stage=stage).inc()
            log.error("escalation %s not taken (%s): the session is not escalated", record.id, stage)
        return taken

    def _taken_late(
        self, done: asyncio.Future[bool], record: EscalationRecord, assessment: Assessment
    ) -> None:
        """The hand-off of a cut-short escalation finished: count the session as escalated if it was taken."""
        if done.cancelled() or not done.result():
            return
        if self._escalation is None or assessment.level.rank < self._escalation.level.rank:
            self._escalation, self._record = assessment, record

    def _record_for(self, assessment: Assessment, trigger: str) -> EscalationRecord:
        """The full record, or, if it cannot be built, a minimal one: the clinician is called either way."""
        try:
            record = self._make_record(assessment, trigger)
        except Exception as exc:  # noqa: BLE001 - a clinician must be called whatever broke here
            ESCALATION_FAILURES_TOTAL.labels(stage="record").inc()
            log.error("escalation record incomplete (%s): sending the minimal one", type(exc).__name__)
            record = EscalationRecord.create(
                session_id=self._session_id,
                level=assessment.level,
                reasons=[],
                rule_ids=assessment.rule_ids,
                summary="",
                transcript=[],
                channel=self._channel,
            )
        if self._record is not None:  # the same escalation, raised: the queue refreshes the one it has
            record.id, record.created_at = self._record.id, self._record.created_at
        elif self._resumes_record is not None:  # the same escalation, from before the cut
            record.id = self._resumes_record
        return record

    def _make_record(self, assessment: Assessment, trigger: str) -> EscalationRecord:
        image = self._best_image
        transcript = self._transcript + ([("patient", trigger)] if trigger else [])
        return EscalationRecord.create(
            session_id=self._session_id,
            level=assessment.level,
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


def _settle(handoff: HandOff, saving: asyncio.Future[object]) -> None:
    """A session without a queue: its store taking the record is the hand-off."""
    if saving.cancelled() or saving.exception() is not None:
        if not saving.cancelled():
            log.error("could not store escalation: %s", type(saving.exception()).__name__)
        handoff.refused()
    else:
        handoff.taken()
