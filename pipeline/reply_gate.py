"""The reply gate: the voice's audio for a draft turn waits here until the turn really ends.

Preemptive generation (``pipeline/incremental_stt.py``) answers the patient's turn while the end
of turn is still undecided, so that the reply is written and its first sentence synthesised in the
silence the agent waits out anyway. The gate is the last processor before the transport: from the
moment a ``PreemptiveTurnFrame`` passes, it holds what the voice makes (audio and the voice's
start, stop and text frames) instead of letting the transport play it:

* the draft's ``PreemptiveTurnSettledFrame`` with ``kept`` releases it, in order, at once, and the
  gate lets the rest of the reply through as it comes;
* an interruption (the patient went on, a barge-in, an escalation) drops it unheard: the
  interruption has cut the reply upstream too, and whatever the safety layer says next (its lines
  come after its interruption) passes;
* a draft never settled within ``max_hold_s`` is released: a lost settlement must not silence
  the agent (fail safe), and the speech-to-text settles every draft well before that.

Everything else (system frames, the session's data frames) passes untouched.
"""

from __future__ import annotations

import asyncio
import logging

from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    OutputAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipeline.frames import KeptEarly, PreemptiveTurnFrame, PreemptiveTurnSettledFrame

log = logging.getLogger(__name__)
VOICE_FRAMES = (OutputAudioRawFrame, TTSStartedFrame, TTSStoppedFrame, TTSTextFrame)


class ReplyGate(FrameProcessor):
    def __init__(self, *, max_hold_s: float = 5.0) -> None:
        super().__init__()
        self._max_hold_s = max_hold_s
        self._holding: int | None = None  # the draft whose voice is held
        self._held: list[Frame] = []
        self._kept_early = KeptEarly()  # a settlement that overtook its draft
        self._timer: asyncio.Task | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
        elif isinstance(frame, PreemptiveTurnFrame):
            await self._on_draft(frame.draft_id)
            await self.push_frame(frame, direction)
        elif isinstance(frame, PreemptiveTurnSettledFrame):
            await self.push_frame(frame, direction)
            await self._on_settled(frame)
        elif isinstance(frame, InterruptionFrame):
            await self._stop_holding()
            self._held = []  # unheard, and cut upstream by the same interruption
            await self.push_frame(frame, direction)
        elif self._holding is not None and isinstance(frame, VOICE_FRAMES):
            self._held.append(frame)
        else:
            await self.push_frame(frame, direction)

    async def _on_draft(self, draft_id: int) -> None:
        if self._kept_early.take(draft_id):  # already kept: its voice plays as it comes
            return
        await self._release()  # a voice still held for an earlier draft is not this one's to drop
        self._holding = draft_id
        self._timer = self.create_task(self._release_after_max_hold(draft_id), "reply-gate-hold")

    async def _on_settled(self, settled: PreemptiveTurnSettledFrame) -> None:
        if settled.draft_id != self._holding:
            self._kept_early.note(settled)  # its draft may still be on its way
            return
        if settled.kept:
            await self._release()
        else:
            await self._stop_holding()
            self._held = []

    async def _release(self) -> None:
        """Play what was held, in order, and let the rest of the reply through."""
        await self._stop_holding()
        held, self._held = self._held, []
        for frame in held:
            await self.push_frame(frame)

    async def _stop_holding(self) -> None:
        self._holding = None
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            await self.cancel_task(timer)

    async def _release_after_max_hold(self, draft_id: int) -> None:
        await asyncio.sleep(self._max_hold_s)
        if self._holding == draft_id:
            log.warning("a draft reply was never settled: released after %.1f s", self._max_hold_s)
            await self._release()

    async def cleanup(self) -> None:
        await self._stop_holding()
        await super().cleanup()
