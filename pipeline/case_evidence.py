"""Similar-case evidence: the one place where retrieval changes a turn's assessment.

It sits after retrieval and before the brain, so that every ``ClinicalStateFrame`` the brain and
the escalation processor read already carries the turn's single assessment:

* when the similar SCIN cases of a turn are mostly malignant (``rag.malignancy``, share at or
  above ``malignant_share``), the finding ``retrieval_malignant`` becomes evidence for the rest
  of the session, and each state after that (a phrase still being spoken, or a finished turn) is
  assessed with it: the more urgent of triage's verdict and the policy's verdict with the
  evidence. Benign neighbours add nothing, so they can never lower a level;
* the cases of a turn arrive after its state (the search runs beside the conversation). When
  they raise the latest turn's assessment, the state is sent again, ``revised``, with the raised
  assessment, after the ``SimilarCasesFrame`` (so the escalation record has the cases): the
  escalation processor escalates on it and the brain words its next reply with it.

The assessment is changed on the frame itself, never next to it: one verdict per turn.
"""

from __future__ import annotations

import logging

from pipecat.frames.frames import Frame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.backends.base import RetrievedCase
from agent.facts import ClinicalFacts
from agent.policy import Assessment, Policy, default_policy
from pipeline.frames import ClinicalStateFrame, SimilarCasesFrame

log = logging.getLogger(__name__)
MALIGNANT = "retrieval_malignant"


class CaseEvidenceProcessor(FrameProcessor):
    def __init__(self, *, policy: Policy | None = None, malignant_share: float = 0.5) -> None:
        super().__init__()
        self._policy = policy or default_policy()
        self._malignant_share = malignant_share
        self._evidence: set[str] = set()
        self._latest: ClinicalStateFrame | None = None  # the last finished turn's state

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, ClinicalStateFrame) and direction == FrameDirection.DOWNSTREAM:
            frame.assessment = self._with_evidence(frame.facts, frame.assessment)
            if frame.final:
                self._latest = frame
            await self.push_frame(frame, direction)
        elif isinstance(frame, SimilarCasesFrame) and direction == FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
            await self._on_similar_cases(frame.cases)
        else:
            await self.push_frame(frame, direction)

    def _with_evidence(self, facts: ClinicalFacts, assessment: Assessment | None) -> Assessment | None:
        """The more urgent of ``assessment`` and the policy's verdict with the evidence so far."""
        if not self._evidence:
            return assessment
        with_evidence = self._policy.assess(facts, self._evidence)
        if assessment is None or with_evidence.level.rank < assessment.level.rank:
            return with_evidence
        return assessment

    async def _on_similar_cases(self, cases: list[RetrievedCase]) -> None:
        from rag.malignancy import malignant_share

        if not cases or MALIGNANT in self._evidence or malignant_share(cases) < self._malignant_share:
            return
        self._evidence.add(MALIGNANT)
        latest = self._latest
        facts = latest.facts if latest else ClinicalFacts()
        before = latest.assessment if latest else None
        raised = self._with_evidence(facts, before)
        if raised is None or raised is before:
            return
        log.info("similar cases raise the assessment: level=%s", raised.level.value)
        revised = ClinicalStateFrame(
            facts=facts, assessment=raised, final=True, text=latest.text if latest else "", revised=True
        )
        self._latest = revised
        await self.push_frame(revised)
