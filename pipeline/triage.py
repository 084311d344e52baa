"""The triage processor: the patient's words in, the conversation state and the safety verdict out.

It owns the session's ``ClinicalFacts``. Each interim phrase is assessed on a provisional copy
(so a red flag is seen while the patient is still talking); each final turn is committed. A draft
of the turn (``PreemptiveTurnFrame``, preemptive generation) is assessed like a phrase, on a
provisional copy, and carries that state on to the brain; a draft triage would not answer
straight away (it would ask what the patient meant first) is not passed on.
Either way a ``ClinicalStateFrame`` goes downstream *before* the transcription it came from, so
the brain words its reply with the state, and the escalation processor can escalate on it. Its
assessment is the turn's only one: similar-case evidence may raise it on the way
(``pipeline/case_evidence.py``), and nothing downstream assesses again.

The verdict reads the patient's words three ways, and the most urgent reading wins:

1. as transcribed, through the lexicon and the rules (``agent/facts.py``, ``agent/policy.py``);
2. by sound: each word that sounds like a red-flag keyword read as that keyword
   (``agent/hearing.py``: "soars" as "sores", "lamp" as "lump");
3. by meaning: each sentence compared with the escalating rules' example sentences
   (``agent/semantic_flags.py``), for red flags said in words the lexicon does not know.

The facts the interview sees are the first reading only: a sound-alike never makes the agent
say "thank you: a mole" to a patient who talked about a mall. The safety verdict sees all three.
"""

from __future__ import annotations

import logging

from pipecat.frames.frames import Frame, InterimTranscriptionFrame, TranscriptionFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.clarify import UNCLEAR_AVG_LOGPROB, UNSURE_AVG_LOGPROB, Ask, Understanding, confirmation
from agent.facts import ClinicalFacts, Presence, extract_facts
from agent.hearing import as_keywords
from agent.policy import Assessment, Policy, Reason, default_policy
from agent.semantic_flags import PrototypeMatch, SemanticRedFlags
from pipeline.frames import ClinicalStateFrame, Heard, PreemptiveTurnFrame, UnclearSpeechFrame

log = logging.getLogger(__name__)


class TriageProcessor(FrameProcessor):
    def __init__(
        self,
        policy: Policy | None = None,
        *,
        sounds_like: bool = True,
        semantic: SemanticRedFlags | None = None,
        facts: ClinicalFacts | None = None,
    ) -> None:
        """``facts``: what a session cut off had heard, when this one resumes it (``pipeline/resume.py``)."""
        super().__init__()
        self._policy = policy or default_policy()
        self._sounds_like = sounds_like
        self._semantic = semantic
        self._facts = facts.copy() if facts else ClinicalFacts()  # what the patient said, as transcribed
        # The same, plus what sound-alike readings add (safety only; a resumed session's start
        # from the facts kept: the sound-alike readings are not).
        self._heard = self._facts.copy()
        self._understanding = Understanding()

    @property
    def facts(self) -> ClinicalFacts:
        return self._facts

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame) and frame.finalized:
            await self._on_turn(frame.text, frame.result if isinstance(frame.result, Heard) else None)
        elif isinstance(frame, UnclearSpeechFrame):
            await self._on_unclear()
        elif isinstance(frame, InterimTranscriptionFrame):
            facts = extract_facts(frame.text, into=self._facts.copy())
            heard = self._read(frame.text, into=self._heard.copy())
            await self._push_state(facts, heard, frame.text, final=False)
        elif isinstance(frame, PreemptiveTurnFrame):
            await self._on_draft(frame)
            return
        await self.push_frame(frame, direction)

    async def _on_draft(self, draft: PreemptiveTurnFrame) -> None:
        """The turn so far, assessed like a phrase (nothing committed); passed on with its state
        unless the agent would first ask what the patient meant, or hear a yes to a clinician."""
        facts = extract_facts(draft.text, into=self._facts.copy())
        heard = self._read(draft.text, into=self._heard.copy())
        state = await self._push_state(facts, heard, draft.text, final=False)
        unsure = draft.heard is not None and draft.heard.avg_logprob < UNSURE_AVG_LOGPROB
        if unsure or self._understanding.offered_clinician or self._understanding.unclear_in_a_row:
            return
        draft.state = state
        await self.push_frame(draft)

    async def _on_turn(self, text: str, heard: Heard | None) -> None:
        extract_facts(text, into=self._facts)
        self._read(text, into=self._heard)
        if self._understanding.understood(text):  # "yes" to the clinician the agent offered
            self._heard.record("asks_for_clinician", Presence.PRESENT)
        assessment = self.assess(self._heard, text)
        ask: Ask | None = None
        if heard is not None and not assessment.escalate:
            if heard.avg_logprob < UNCLEAR_AVG_LOGPROB:
                ask = self._understanding.unclear()
                if ask is None:
                    assessment = Assessment.not_understood()
            elif heard.avg_logprob < UNSURE_AVG_LOGPROB:
                ask = confirmation(extract_facts(text))
        log.debug("triage: level=%s final=True ask=%s", assessment.level.value, ask.kind if ask else "-")
        await self.push_frame(
            ClinicalStateFrame(
                facts=self._facts.copy(), assessment=assessment, final=True, text=text, ask=ask
            )
        )

    async def _on_unclear(self) -> None:
        """Speech with no words in it: ask again, offer a clinician, and at the third, escalate."""
        ask = self._understanding.unclear()
        assessment = self._policy.assess(self._heard) if ask is not None else Assessment.not_understood()
        await self.push_frame(
            ClinicalStateFrame(facts=self._facts.copy(), assessment=assessment, final=True, text="", ask=ask)
        )

    def _read(self, text: str, *, into: ClinicalFacts) -> ClinicalFacts:
        as_said = extract_facts(text)
        extract_facts(text, into=into)
        reading = as_keywords(text) if self._sounds_like else None
        if reading is not None:
            # A sound-alike may only add what the words as transcribed did not speak of at
            # all: "the glass test and it fades" must not become "... it fade" and lose its denial.
            for fid in extract_facts(reading).present_ids() - set(as_said.findings):
                into.record(fid, Presence.PRESENT)
        return into

    def assess(self, heard: ClinicalFacts, text: str) -> Assessment:
        """The most urgent of the rules (on the words and their sound-alikes) and the meaning."""
        assessment = self._policy.assess(heard)
        if self._semantic is None or assessment.escalate:
            return assessment
        match = self._semantic.detect(text)
        if match is None:
            return assessment
        log.info("red flag by meaning: rule=%s similarity=%.2f", match.rule_id, match.similarity)
        return _by_meaning(match, assessment)

    async def _push_state(
        self, facts: ClinicalFacts, heard: ClinicalFacts, text: str, *, final: bool
    ) -> ClinicalStateFrame:
        assessment = self.assess(heard, text)
        log.debug("triage: level=%s final=%s", assessment.level.value, final)
        state = ClinicalStateFrame(facts=facts, assessment=assessment, final=final, text=text)
        await self.push_frame(state)
        return state


def _by_meaning(match: PrototypeMatch, rules_said: Assessment) -> Assessment:
    reason = Reason(
        match.rule_id,
        match.says,
        f"close in meaning to the rule's examples (similarity {match.similarity:.2f}); {match.rule_id}",
    )
    return Assessment(match.level, (reason,), confidence=1.0, escalate_from=rules_said.escalate_from)
