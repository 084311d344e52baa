"""The brain processor: a finished patient turn in, the agent's reply out as streamed text.

It speaks the backend's greeting when the session starts and answers each final
``TranscriptionFrame``, with the turn's one assessment (the ``ClinicalStateFrame`` before it, as
the escalation processor reads it too). The reply streams as ``LLMTextFrame`` pieces between
``LLMFullResponseStart/EndFrame``, like any pipecat LLM service, so the spoken guard and the TTS
downstream work sentence by sentence. An interruption (barge-in, escalation) cancels the reply
in flight. Errors, timeouts and empty replies become a ``BrainFailedFrame``: the escalation
processor turns that into an escalation, so the agent never falls silent. There are two clocks:
the first words must come within ``first_text_timeout_s``, and the whole reply within
``REPLY_DEADLINE_FACTOR`` times that, so a backend that trickles a word now and then cannot
keep the patient waiting for ever.

Preemptive generation: a ``PreemptiveTurnFrame`` (the turn so far, while the end of turn is
undecided) is answered like a final turn, with the draft's provisional state, but only tentatively:
when its ``PreemptiveTurnSettledFrame`` keeps it, the final ``TranscriptionFrame`` of the same words
that follows is not answered again; when the draft is dropped (or an interruption cuts it), the
history goes back to what it was before it, so the turn is answered whole once it ends.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    StartFrame,
    TranscriptionFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.backends.base import BrainBackend, BrainRequest, CameraImage, RetrievedCase, Utterance
from agent.channel import Channel
from agent.policy import Assessment
from pipeline.frames import (
    AgentUtteranceFrame,
    BrainFailedFrame,
    CameraStillFrame,
    ClinicalStateFrame,
    EscalationFrame,
    EscalationResolvedFrame,
    KeptEarly,
    PreemptiveTurnFrame,
    PreemptiveTurnSettledFrame,
    SimilarCasesFrame,
)
from pipeline.metrics import MODEL_BACKEND_ERRORS_TOTAL, MODEL_BACKEND_TIMEOUTS_TOTAL

log = logging.getLogger(__name__)
REPLY_DEADLINE_FACTOR = 3.0  # the whole reply, in multiples of the time allowed for its first words


class BrainProcessor(FrameProcessor):
    def __init__(
        self,
        backend: BrainBackend,
        *,
        first_text_timeout_s: float = 20.0,
        channel: Channel = Channel.VIDEO,
        greeting: str | None = None,
    ) -> None:
        """``greeting`` replaces the backend's opening line (a resumed session's, ``pipeline/resume.py``)."""
        super().__init__()
        self._backend = backend
        self._greeting = greeting
        self._timeout_s = first_text_timeout_s
        # Zero series for this backend from the start: an alert sees the first failure as a rise.
        MODEL_BACKEND_TIMEOUTS_TOTAL.labels(backend=backend.name)
        MODEL_BACKEND_ERRORS_TOTAL.labels(backend=backend.name)
        self._channel = channel
        self._history: list[Utterance] = []
        self._latest_image: CameraImage | None = None
        self._state: ClinicalStateFrame | None = None
        self._similar: list[RetrievedCase] = []
        self._escalated = False
        self._asked_instead = False  # this turn was answered with a question of triage's own
        self._draft: _Draft | None = None  # a draft turn answered, not yet settled
        self._kept_early = KeptEarly()  # a settlement that overtook its draft

    @property
    def assessment(self) -> Assessment | None:
        """The assessment the brain words its replies with: the latest finished turn's."""
        return self._state.assessment if self._state else None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            await self._speak_text(self._greeting or self._backend.greeting())
            return
        if isinstance(frame, EscalationFrame) and direction == FrameDirection.UPSTREAM:
            self._escalated = True
            return  # the escalation was for us; it already travels downstream
        if isinstance(frame, EscalationResolvedFrame):
            self._escalated = False
            return
        if isinstance(frame, PreemptiveTurnSettledFrame):
            self._on_draft_settled(frame)
        elif isinstance(frame, InterruptionFrame) and self._draft is not None and not self._draft.kept:
            self._forget_draft()  # its reply was cut: the turn is answered whole when it ends
        if isinstance(frame, AgentUtteranceFrame) and direction == FrameDirection.UPSTREAM:
            self._history.append(Utterance("agent", frame.text))
            return
        if isinstance(frame, PreemptiveTurnFrame):
            await self._on_draft(frame)
            return
        if isinstance(frame, CameraStillFrame):
            self._latest_image = frame.image
        elif isinstance(frame, ClinicalStateFrame) and frame.final:
            self._state = frame
        elif isinstance(frame, SimilarCasesFrame):
            self._similar = list(frame.cases)
        await self.push_frame(frame, direction)
        if isinstance(frame, ClinicalStateFrame) and frame.final and frame.ask and not self._escalated:
            # Unsure what the patient said: ask before answering (agent/clarify.py).
            await self._speak_text(frame.ask.text)
            self._asked_instead = bool(frame.text)  # a transcription of this turn follows
        elif (
            isinstance(frame, TranscriptionFrame) and frame.finalized and self._answered_as_draft(frame.text)
        ):
            self._draft = None  # answered already: its words and reply are in the history
        elif isinstance(frame, TranscriptionFrame) and frame.finalized and not self._escalated:
            if self._asked_instead:
                self._asked_instead = False
                self._history.append(Utterance("patient", frame.text))
            else:
                await self._answer(frame.text)

    async def _speak_text(self, text: str) -> None:
        await self.push_frame(LLMFullResponseStartFrame())
        await self.push_frame(LLMTextFrame(text))
        await self.push_frame(LLMFullResponseEndFrame())

    async def _on_draft(self, draft: PreemptiveTurnFrame) -> None:
        """Answer the draft turn; passed on only then, so that the voice is held only for a reply.
        Not while escalated (the safety layer speaks then), nor without triage's state of it."""
        if self._escalated or draft.state is None or draft.state.ask is not None:
            return
        kept = self._kept_early.take(draft.draft_id)
        self._draft = _Draft(draft.draft_id, draft.text, len(self._history), kept)
        await self.push_frame(draft)
        await self._answer(draft.text, state=draft.state)

    def _on_draft_settled(self, settled: PreemptiveTurnSettledFrame) -> None:
        draft = self._draft
        if draft is None or draft.draft_id != settled.draft_id:
            self._kept_early.note(settled)  # its draft may still be on its way
            return
        if settled.kept:
            draft.kept = True
        else:
            self._forget_draft()

    def _answered_as_draft(self, text: str) -> bool:
        """This final turn's words were answered as a draft that was kept."""
        return self._draft is not None and self._draft.kept and self._draft.text == text

    def _forget_draft(self) -> None:
        """A dropped draft leaves no trace in the history (the turn's state was never committed)."""
        draft, self._draft = self._draft, None
        if draft is not None:
            del self._history[draft.history_len :]

    async def _answer(self, patient_text: str, state: ClinicalStateFrame | None = None) -> None:
        state = state or self._state
        request = BrainRequest(
            patient_text=patient_text,
            history=list(self._history),
            images=[self._latest_image] if self._latest_image else [],
            similar_cases=list(self._similar),
            facts=state.facts if state else None,
            assessment=state.assessment if state else None,
            channel=self._channel,
        )
        self._history.append(Utterance("patient", patient_text))
        await self.push_frame(LLMFullResponseStartFrame())
        produced = False
        failure = ""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s * REPLY_DEADLINE_FACTOR
        try:
            stream = self._backend.reply(request).__aiter__()
            while True:
                piece_timeout = self._timeout_s if not produced else self._timeout_s * 2
                timeout = min(piece_timeout, deadline - loop.time())
                try:
                    piece = await asyncio.wait_for(stream.__anext__(), timeout=max(timeout, 0.0))
                except StopAsyncIteration:
                    break
                if piece:
                    produced = produced or bool(piece.strip())
                    await self.push_frame(LLMTextFrame(piece))
        except TimeoutError:
            failure = "the brain timed out"
            MODEL_BACKEND_TIMEOUTS_TOTAL.labels(backend=self._backend.name).inc()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend failure must fail safe
            log.error("brain backend failed: %s", type(exc).__name__)
            MODEL_BACKEND_ERRORS_TOTAL.labels(backend=self._backend.name).inc()
            failure = f"the brain failed ({type(exc).__name__})"
        if not produced and not failure:
            failure = "the brain produced no reply"
        await self.push_frame(LLMFullResponseEndFrame())
        if failure:
            await self.push_frame(BrainFailedFrame(reason=failure))


@dataclass
class _Draft:
    """A draft turn the brain answered: how far to undo the history if it is dropped."""

    draft_id: int
    text: str
    history_len: int  # the history before the draft's patient words
    kept: bool = False
