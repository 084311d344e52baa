"""The spoken guard: the last thing the agent's words pass before the voice.

It sits after the escalation and clinician-presence processors and before Piper, so nothing the
agent says bypasses it:

* the brain's streamed reply is split into sentences, and each passes the language guard
  (``agent/language_guard.py``: no certain diagnosis, no prescribing, no "you don't need a
  doctor") before Piper speaks it; a reply that assesses or recommends gets the disclaimer when
  the policy says it is due (``agent/disclaimer.py``);
* the safety layer's own lines (``AgentLineFrame``: an escalation, company while waiting, a
  clinician's arrival) are said as written, as one agent turn each;
* every finished turn is reported as an ``AgentUtteranceFrame``, both ways: downstream for
  transcripts, upstream for the brain's history and the escalation record.

An interruption (a barge-in, an escalation) drops the reply it cuts short: what was not said is
not reported as said. A reply to a draft turn (``PreemptiveTurnFrame``, preemptive generation) is
guarded like any other, but reported only once its ``PreemptiveTurnSettledFrame`` keeps it; a
dropped draft's reply is never reported, and the disclaimer it carried is still due.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from dataclasses import dataclass

from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.disclaimer import DisclaimerPolicy
from agent.language_guard import guard
from pipeline.frames import (
    AgentLineFrame,
    AgentUtteranceFrame,
    KeptEarly,
    PreemptiveTurnFrame,
    PreemptiveTurnSettledFrame,
)

log = logging.getLogger(__name__)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class SpokenGuardProcessor(FrameProcessor):
    def __init__(self, *, disclaimer_every_turns: int = 3) -> None:
        super().__init__()
        self._disclaimers = DisclaimerPolicy(disclaimer_every_turns)
        self._pending = ""  # the brain's words not yet a whole sentence
        self._reply: list[str] = []  # the sentences of the reply so far, as guarded
        self._reply_started = 0.0
        self._draft: _DraftReply | None = None  # the reply to a draft turn, until it is settled
        self._kept_early = KeptEarly()  # a settlement that overtook its draft

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, PreemptiveTurnSettledFrame):
            await self.push_frame(frame, direction)
            await self._on_draft_settled(frame)
            return
        if isinstance(frame, PreemptiveTurnFrame) and direction == FrameDirection.DOWNSTREAM:
            if not self._kept_early.take(frame.draft_id):
                self._draft = _DraftReply(frame.draft_id, copy.deepcopy(self._disclaimers))
        if direction != FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._pending, self._reply, self._reply_started = "", [], time.monotonic()
            await self.push_frame(frame, direction)
        elif isinstance(frame, LLMTextFrame):
            await self._on_brain_text(frame.text)
        elif isinstance(frame, LLMFullResponseEndFrame):
            await self._finish_reply()
            await self.push_frame(frame, direction)
        elif isinstance(frame, AgentLineFrame):
            await self._say_line(frame.text)
        else:
            if isinstance(frame, InterruptionFrame):
                self._pending, self._reply = "", []
                self._drop_draft()
            await self.push_frame(frame, direction)

    async def _on_brain_text(self, text: str) -> None:
        self._pending += text
        *complete, self._pending = SENTENCE_END.split(self._pending)
        for sentence in complete:
            await self._say_sentence(sentence)

    async def _say_sentence(self, sentence: str) -> None:
        sentence = sentence.strip()
        if not sentence:
            return
        guarded = guard(sentence)
        if guarded.changes:
            log.info("language guard: %s", ",".join(guarded.changes))
        self._reply.append(guarded.text)
        await self.push_frame(LLMTextFrame(guarded.text + " "))

    async def _finish_reply(self) -> None:
        await self._say_sentence(self._pending)
        self._pending = ""
        text = " ".join(self._reply)
        self._reply = []
        disclaimer = self._disclaimers.disclaimer_for(text)
        if disclaimer:
            await self.push_frame(LLMTextFrame(disclaimer))
            text = f"{text} {disclaimer}".strip()
        if self._draft is not None and self._draft.report is None:
            self._draft.report = (text, self._reply_started)  # said only if the draft is kept
            return
        await self._report(text, self._reply_started)

    async def _on_draft_settled(self, settled: PreemptiveTurnSettledFrame) -> None:
        draft = self._draft
        if draft is None or draft.draft_id != settled.draft_id:
            self._kept_early.note(settled)  # its draft may still be on its way
            return
        if not settled.kept:
            self._drop_draft()
            return
        self._draft = None
        if draft.report is not None:
            await self._report(*draft.report)

    def _drop_draft(self) -> None:
        """The draft's reply was not heard: not reported, and its disclaimer still due."""
        if self._draft is not None:
            self._disclaimers = self._draft.disclaimers_before
            self._draft = None

    async def _say_line(self, text: str) -> None:
        """A line of the safety layer's own, as one agent turn: said as written."""
        started = time.monotonic()
        await self.push_frame(LLMFullResponseStartFrame())
        await self.push_frame(LLMTextFrame(text))
        await self.push_frame(LLMFullResponseEndFrame())
        await self._report(text, started)

    async def _report(self, text: str, started_at: float) -> None:
        await self.broadcast_frame(
            AgentUtteranceFrame,
            text=text,
            disclaimer=self._disclaimers.carries_disclaimer(text),
            started_at=started_at,
        )


@dataclass
class _DraftReply:
    """The reply to a draft turn, held until the draft is settled."""

    draft_id: int
    disclaimers_before: DisclaimerPolicy  # the disclaimer policy as it was before the reply
    report: tuple[str, float] | None = None  # the finished reply's words and start, not yet reported
