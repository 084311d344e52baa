"""Speech to text that works while the patient is still talking.

Whisper is transcribing before the turn is over, so that little is left to do when it ends:

* at every short pause (the VAD's stop, ~0.2 s of silence) the phrase since the last pause
  is transcribed at once, in the background;
* if the patient goes on, that phrase is committed (and shown as an interim caption) and
  the next pass covers only the new phrase;
* meanwhile the end-of-turn model (Smart Turn v3) listens to the turn so far: if it hears
  a finished utterance, and the words so far do not stop on an open word ("It's on my",
  ``pipeline/unfinished_words.py``), the turn ends after ``complete_stop_s`` of silence,
  otherwise after ``turn_stop_s`` -- a patient who pauses mid-thought is not cut off;
* and, before that silence is over, the turn so far goes ahead as a draft (preemptive
  generation): ``preempt_lead_s`` before the silence would end it (at once when the pause's pass
  is done, if that is later), a ``PreemptiveTurnFrame`` with the words so far lets the brain
  write and the voice synthesise the reply while the patient may still go on. When the silence
  ends the turn with the same words, a ``PreemptiveTurnSettledFrame`` keeps it and the held
  audio plays at once; when the patient speaks again first, the draft is dropped unheard (an
  interruption cancels it, and it is settled as not kept) and the turn goes on.

The turn's text is the committed phrases plus the last pass, which has been running since
the pause began. The processor owns the patient's turn: it announces its start and its
end, the final ``TranscriptionFrame`` just before. A turn that starts while the agent may be
answering interrupts it (barge-in): not only while its audio plays but whenever an answer
to an earlier turn may still be on its way (being written, synthesised, or between two
sentences), so that it is dropped rather than played over the patient.

A session that ends gracefully (an ``EndFrame``: the patient hung up, the clinician ended it)
first finishes the turn it holds: the words heard so far are transcribed and pushed as the
turn's final ``TranscriptionFrame`` ahead of the ``EndFrame``, so the triage still assesses them
(a patient who says "I can't breathe" as the line drops is escalated). Only a cancellation
drops the turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Protocol

import numpy as np
from pipecat.audio.turn.base_turn_analyzer import BaseTurnAnalyzer, EndOfTurnState
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.utils.time import time_now_iso8601

from pipeline.frames import (
    BrainFailedFrame,
    Heard,
    PreemptiveTurnFrame,
    PreemptiveTurnSettledFrame,
    UnclearSpeechFrame,
)
from pipeline.unfinished_words import sounds_unfinished

PATIENT = "patient"
MIN_UNCLEAR_TURN_S = 1.0  # a turn this long with no words is speech we missed, not a cough
log = logging.getLogger(__name__)


class SpeechToText(Protocol):
    sample_rate: int

    async def transcribe_scored_async(self, samples: np.ndarray, prompt: str = "") -> Heard: ...


class IncrementalWhisperSTT(FrameProcessor):
    """VAD events + 16 kHz audio in; turn frames, interim and final transcriptions out."""

    def __init__(
        self,
        transcriber: SpeechToText,
        *,
        end_of_turn: BaseTurnAnalyzer | None = None,
        turn_stop_s: float = 1.2,
        complete_stop_s: float = 0.5,
        vad_stop_s: float = 0.2,
        pre_roll_s: float = 0.5,
        min_speech_s: float = 0.25,
        max_phrase_s: float = 25.0,
        preempt_lead_s: float | None = None,
    ) -> None:
        super().__init__()
        self._transcriber = transcriber
        self._rate = transcriber.sample_rate
        self._end_of_turn = end_of_turn
        if end_of_turn is not None:
            end_of_turn.set_sample_rate(self._rate)
        self._unsure_wait_s = max(0.0, turn_stop_s - vad_stop_s)
        self._complete_wait_s = max(0.0, complete_stop_s - vad_stop_s)
        self._preempt_lead_s = preempt_lead_s  # None: no drafts, the turn goes when it ends
        self._drafts = 0  # draft ids, per session
        self._pre_roll: deque[bytes] = deque(maxlen=max(1, int(pre_roll_s / 0.02)))
        self._min_speech_bytes = 2 * int(min_speech_s * self._rate)
        self._max_phrase_bytes = 2 * int(max_phrase_s * self._rate)
        self._bot_speaking = False
        self._answer_may_be_pending = False  # a turn ended; the agent's reply may not be audible yet
        self._reset_turn()

    def _reset_turn(self) -> None:
        self._in_turn = False
        self._speaking = False
        self._audio = bytearray()
        self._phrase_start = 0  # byte offset where the next phrase begins
        self._passes: list[asyncio.Task[str]] = []
        self._turn_timer: asyncio.Task | None = None
        self._recognition_failure = ""
        self._scores: list[Heard] = []  # each pass's own scores
        self._draft: PreemptiveTurnFrame | None = None  # the turn so far, gone ahead unheard

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self._on_audio(frame)
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            await self._on_speech_started()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._on_speech_paused()
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, EndFrame):
            await self._finish_turn_now()
        elif isinstance(frame, CancelFrame):
            await self._abandon_turn()
        await self.push_frame(frame, direction)

    def _on_audio(self, frame: InputAudioRawFrame) -> None:
        if frame.sample_rate != self._rate or frame.num_channels != 1:
            raise ValueError(f"IncrementalWhisperSTT needs {self._rate} Hz mono, got {frame.sample_rate} Hz")
        if self._end_of_turn is not None:
            self._end_of_turn.append_audio(frame.audio, self._speaking)
        if not self._in_turn:
            self._pre_roll.append(frame.audio)
            return
        self._audio.extend(frame.audio)
        if self._speaking and len(self._audio) - self._phrase_start > self._max_phrase_bytes:
            self._start_pass()  # a very long phrase: transcribe it before Whisper's window fills

    async def _on_speech_started(self) -> None:
        self._speaking = True
        if self._turn_timer is not None:  # the patient went on after a short pause
            await self.cancel_task(self._turn_timer)
            self._turn_timer = None
            await self._drop_draft()
            await self._push_interim()
            return
        if self._in_turn:
            return
        self._in_turn = True
        self._audio = bytearray(b"".join(self._pre_roll))
        self._pre_roll.clear()
        if self._bot_speaking or self._answer_may_be_pending:
            await self.broadcast_interruption()  # barge-in: the agent stops at once
        self._answer_may_be_pending = False
        await self.broadcast_frame(UserStartedSpeakingFrame)

    def _on_speech_paused(self) -> None:
        if not self._in_turn:
            return
        self._speaking = False
        self._start_pass()
        self._turn_timer = self.create_task(self._end_turn_after_silence(), "turn-timer")

    def _start_pass(self) -> None:
        """Transcribe the phrase since the last pass, chained after the passes before it."""
        end = len(self._audio)
        if end - self._phrase_start < self._min_speech_bytes:
            return  # too short to be a phrase; it stays in the next one
        phrase = np.frombuffer(bytes(self._audio[self._phrase_start : end]), dtype=np.int16)
        self._phrase_start = end
        previous = self._passes[-1] if self._passes else None
        self._passes.append(self.create_task(self._transcribe_after(previous, phrase), "stt-pass"))

    async def _transcribe_after(self, previous: asyncio.Task[str] | None, phrase: np.ndarray) -> str:
        # Shielded: a cancelled turn timer awaiting a pass must not cancel the pass itself.
        prompt = (await asyncio.shield(previous) if previous is not None else "") or ""
        try:
            heard = await self._transcriber.transcribe_scored_async(phrase, prompt=prompt[-200:])
        except Exception as exc:  # noqa: BLE001 - noted here, acted on when the turn ends
            log.error("speech recognition failed: %s", type(exc).__name__)
            self._recognition_failure = f"speech recognition failed ({type(exc).__name__})"
            return prompt
        self._scores.append(heard)
        return f"{prompt} {heard.text}".strip()

    async def _push_interim(self) -> None:
        done = [task for task in self._passes if task.done() and not task.cancelled()]
        if done and done[-1].result():
            frame = InterimTranscriptionFrame(
                text=done[-1].result(), user_id=PATIENT, timestamp=time_now_iso8601()
            )
            await self.push_frame(frame)

    async def _end_turn_after_silence(self) -> None:
        paused_at = time.monotonic()
        wait = self._unsure_wait_s
        state = None
        try:
            if self._end_of_turn is not None:
                state, _metrics = await self._end_of_turn.analyze_end_of_turn()
                if state == EndOfTurnState.COMPLETE and not await self._words_sound_unfinished():
                    wait = self._complete_wait_s
            if self._preempt_lead_s is not None:
                await asyncio.sleep(max(0.0, paused_at + wait - self._preempt_lead_s - time.monotonic()))
                await self._send_draft()
            await asyncio.sleep(max(0.0, paused_at + wait - time.monotonic()))
            text = (await asyncio.shield(self._passes[-1]) if self._passes else "") or ""
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the turn must end, and the failure be heard
            log.error("end of turn failed: %s", type(exc).__name__)
            text, self._recognition_failure = "", f"speech recognition failed ({type(exc).__name__})"
        log.debug(
            "patient turn ended %.0f ms after the pause (end of turn: %s, %d passes)",
            (time.monotonic() - paused_at) * 1000,
            state.name if state else "timer",
            len(self._passes),
        )
        await self._close_turn(text)

    async def _send_draft(self) -> None:
        """The turn so far goes ahead unheard (preemptive generation), once its words are in."""
        text = (await asyncio.shield(self._passes[-1]) if self._passes else "") or ""
        if not text or self._recognition_failure:
            return  # nothing to answer yet, or a failure the turn's end must report
        self._drafts += 1
        self._draft = PreemptiveTurnFrame(
            text=text, heard=_turn_scores(text, self._scores), draft_id=self._drafts
        )
        await self.push_frame(self._draft)

    async def _drop_draft(self) -> None:
        """The patient went on: the reply to the draft is cut (an interruption) and settled unheard."""
        draft, self._draft = self._draft, None
        if draft is None:
            return
        await self.broadcast_interruption()
        await self.push_frame(PreemptiveTurnSettledFrame(draft_id=draft.draft_id, kept=False))

    async def _words_sound_unfinished(self) -> bool:
        """The turn so far stops on an open word ("It's on my", "um"): the pause is not its end.
        Waits for the pass that began at the pause, which the turn's end awaits anyway."""
        if not self._passes:
            return False
        return sounds_unfinished(await asyncio.shield(self._passes[-1]) or "")

    async def _finish_turn_now(self) -> None:
        """The session is ending: the turn in progress is transcribed and closed, not dropped."""
        if not self._in_turn:
            return
        if self._turn_timer is not None:  # in a pause: its pass already covers the phrase
            await self.cancel_task(self._turn_timer)
            self._turn_timer = None
        elif self._speaking:
            self._start_pass()  # cut off mid-phrase: what was heard of it
        try:
            text = (await asyncio.shield(self._passes[-1]) if self._passes else "") or ""
        except Exception as exc:  # noqa: BLE001 - the failure is escalated like any other
            text, self._recognition_failure = "", f"speech recognition failed ({type(exc).__name__})"
        log.info("session ending mid-turn: the last words were transcribed (%d passes)", len(self._passes))
        await self._close_turn(text)

    async def _close_turn(self, text: str) -> None:
        """The turn's final transcription (or what stands for it), then the end of the turn."""
        failure = self._recognition_failure
        scores, spoken_s = list(self._scores), len(self._audio) / 2 / self._rate
        if self._draft is not None and (self._draft.text != text or failure):
            await self._drop_draft()  # the turn ended on other words than its draft's
        elif self._draft is not None:  # the turn ended as drafted: its reply plays now
            await self.push_frame(PreemptiveTurnSettledFrame(draft_id=self._draft.draft_id, kept=True))
        self._reset_turn()
        if self._end_of_turn is not None:
            self._end_of_turn.clear()
        self._answer_may_be_pending = True
        if text:
            frame = TranscriptionFrame(
                text=text,
                user_id=PATIENT,
                timestamp=time_now_iso8601(),
                finalized=True,
                result=_turn_scores(text, scores),
            )
            await self.push_frame(frame)
        elif spoken_s >= MIN_UNCLEAR_TURN_S and not failure:
            await self.push_frame(UnclearSpeechFrame())  # speech, but no words: the agent asks again
        if failure:
            await self.push_frame(BrainFailedFrame(reason=failure))  # the escalation processor escalates
        await self.broadcast_frame(UserStoppedSpeakingFrame)

    async def _abandon_turn(self) -> None:
        """The session is cancelled: the turn, and any draft of it, go with it."""
        if self._turn_timer is not None:
            await self.cancel_task(self._turn_timer)
        for task in self._passes:
            await self.cancel_task(task)
        self._reset_turn()


def _turn_scores(text: str, scores: list[Heard]) -> Heard:
    """A turn is as sure as its least sure phrase."""
    spoken = [h for h in scores if h.text]
    if not spoken:
        return Heard(text)
    return Heard(text, min(h.avg_logprob for h in spoken), max(h.no_speech_prob for h in spoken))
