"""The triage processor: the patient's words in, the conversation state and the policy's verdict out.

It owns the session's ``ClinicalFacts``. Each interim phrase is assessed on a provisional copy
(so a red flag is seen while the patient is still talking); each final turn is committed.
Either way a ``ClinicalStateFrame`` goes downstream *before* the transcription it came from, so
the brain words its reply with the state, and the safety processor can escalate on it.
"""

from __future__ import annotations

import logging

from pipecat.frames.frames import Frame, InterimTranscriptionFrame, TranscriptionFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.facts import ClinicalFacts, extract_facts
from agent.policy import Policy, default_policy
from pipeline.frames import ClinicalStateFrame

log = logging.getLogger(__name__)


class TriageProcessor(FrameProcessor):
    def __init__(self, policy: Policy | None = None) -> None:
        super().__init__()
        self._policy = policy or default_policy()
        self._facts = ClinicalFacts()

    @property
    def facts(self) -> ClinicalFacts:
        return self._facts

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame) and frame.finalized:
            extract_facts(frame.text, into=self._facts)
            await self._push_state(self._facts.copy(), frame.text, final=True)
        elif isinstance(frame, InterimTranscriptionFrame):
            await self._push_state(
                extract_facts(frame.text, into=self._facts.copy()), frame.text, final=False
            )
        await self.push_frame(frame, direction)

    async def _push_state(self, facts: ClinicalFacts, text: str, *, final: bool) -> None:
        assessment = self._policy.assess(facts)
        log.debug("triage: level=%s final=%s", assessment.level.value, final)
        await self.push_frame(ClinicalStateFrame(facts=facts, assessment=assessment, final=final, text=text))
