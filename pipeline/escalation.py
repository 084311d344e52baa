"""The escalation processor: a red flag met is a clinician called, at once and never silently.

It reads the turn's one assessment where it travels (``ClinicalStateFrame``: after each phrase,
while the patient is still talking, and after each turn) and the other ways an escalation is
asked for: the model's second opinion (``SecondOpinionFrame``), a brain that failed
(``BrainFailedFrame``), a patient who pressed the button or 0 (``ClinicianRequestFrame``). It
never assesses anything itself.

On escalation the agent stops (an interruption), the patient's page is told, the agent says
plainly what happens next (for an emergency: call the emergency number first), and the redacted
``EscalationRecord`` is made and broadcast in an ``EscalationFrame``: downstream to the
observers (transcript, clinician queue, the patient's page), upstream to the brain, which gives
no further assessment. While escalated, the brain's replies racing the escalation are dropped
here. An escalation is raised, not repeated: an emergency after an urgent escalation is said,
and comes again under the same record id. A clinician's hand-back (``EscalationResolvedFrame``,
from the clinician-presence processor) lets the interview go on.

Who stores the record is decided when the session is assembled, once: a session the product
builds (``web/product.py``: the server, the phone bridge, a replay, the evaluation) hands its
records to the clinician queue, which stores each one and every change a clinician makes to it,
so this processor gets no ``store``. A session assembled without a queue (a unit test, a
pipeline used as a library) gives it a ``store``, and it stores each record itself. A record that
cannot be stored is logged, and everything else still happens: the patient hears the message and
the queue gets the record.
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
    SimilarCasesFrame,
)
from pipeline.metrics import ESCALATIONS_TOTAL, PREDICTION_CONFIDENCE
from pipeline.second_opinion import SecondOpinionFrame

log = logging.getLogger(__name__)
FAILURE_PREFIX = "I'm sorry, I'm having a technical problem and can't continue the assessment."
BRAIN_REPLY = (LLMFullResponseStartFrame, LLMTextFrame, LLMFullResponseEndFrame)


class EscalationProcessor(FrameProcessor):
    def __init__(
        self,
        *,
        session_id: str,
        store: EscalationStore | None = None,
        emergency_number: str = "911",
        channel: Channel = Channel.VIDEO,
        escalate_from: Urgency = Urgency.URGENT,
    ) -> None:
        super().__init__()
        self._session_id = session_id
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
            await self._escalate(frame.assessment(self._escalate_from))
        elif isinstance(frame, BrainFailedFrame):
            log.error("brain failure (%s): escalating", frame.reason)
            await self._escalate(Assessment.failed(frame.reason), spoken_prefix=FAILURE_PREFIX)
        elif isinstance(frame, ClinicianRequestFrame):
            await self._escalate(Assessment.requested(frame.how))
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
            await self._escalate(assessment, trigger="" if frame.revised else frame.text)

    # --- escalation ---------------------------------------------------------------------

    async def _escalate(self, assessment: Assessment, spoken_prefix: str = "", trigger: str = "") -> None:
        if self._escalation:
            if assessment.level.rank < self._escalation.level.rank:
                # Already escalated, and now it is more urgent (an emergency): say so, and the
                # clinician's record of the same escalation says so too.
                self._escalation = assessment
                message = escalation_message(assessment.level, self._emergency_number)
                await self._raise_alarm(assessment, message, trigger)
            return
        self._escalation = assessment
        message = f"{spoken_prefix} {escalation_message(assessment.level, self._emergency_number)}".strip()
        await self._raise_alarm(assessment, message, trigger)

    async def _raise_alarm(self, assessment: Assessment, message: str, trigger: str) -> None:
        """Stop the agent, tell the clinicians and the patient what happens next, store the record."""
        raised = self._record is not None
        await self.broadcast_interruption()  # the agent stops mid-sentence
        level = assessment.level
        ESCALATIONS_TOTAL.labels(level=level.value).inc()
        rules = ",".join(assessment.rule_ids)
        log.warning("escalation%s: level=%s rules=%s", " raised" if raised else "", level.value, rules)
        await self.push_frame(
            RTVIServerMessageFrame(data={"type": "escalation", "level": level.value, "message": message})
        )
        record = self._make_record(assessment, trigger)
        if self._record is not None:  # the same escalation, raised: the queue refreshes the one it has
            record.id, record.created_at = self._record.id, self._record.created_at
        self._record = record
        # The escalation before its message: whatever follows the message knows of the escalation.
        await self.broadcast_frame(EscalationFrame, record=record)
        await self.push_frame(AgentLineFrame(text=message))
        if self._store is not None:
            try:
                await asyncio.to_thread(self._store.save, record)
            except OSError:
                # What the patient hears and what the clinicians see already happened.
                log.exception("could not store escalation %s", record.id)

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
