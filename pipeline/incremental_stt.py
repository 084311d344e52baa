"""Speech to text that works while the patient is still talking.

Whisper's cost per call is mostly fixed (the encoder always runs on a 30 s window), so
calling it more often does not help. What helps is *when* it runs:

* at every short pause (the VAD's stop, ~0.2 s of silence) the phrase since the last pause
  is transcribed at once, in the background;
* if the patient goes on, that phrase is committed and shown as an interim caption;
* if the silence lasts ``turn_stop_s`` the turn is over, and its text is the committed
  phrases plus the last one, which has been transcribing since the pause began.

So when the turn ends only the tail of the last pass is left to wait for. The processor also
owns the patient's turn: it announces the turn start (interrupting the agent if it is
speaking: barge-in) and the turn end, with the final ``TranscriptionFrame`` just before.
"""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np
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

from pipeline.transcriber import Transcriber

PATIENT = "patient"


class IncrementalWhisperSTT(FrameProcessor):
    """VAD events + 16 kHz audio in; turn frames, interim and final transcriptions out."""

    def __init__(
        self,
        transcriber: Transcriber,
        *,
        turn_stop_s: float = 0.6,
        vad_stop_s: float = 0.2,
        pre_roll_s: float = 0.5,
        min_speech_s: float = 0.25,
        max_phrase_s: float = 25.0,
    ) -> None:
        super().__init__()
        self._transcriber = transcriber
        self._rate = transcriber.sample_rate
        self._turn_wait_s = max(0.0, turn_stop_s - vad_stop_s)
        self._pre_roll: deque[bytes] = deque(maxlen=max(1, int(pre_roll_s / 0.02)))
        self._min_speech_samples = int(min_speech_s * self._rate)
        self._max_phrase_samples = int(max_phrase_s * self._rate)
        self._bot_speaking = False
        self._reset_turn()

    def _reset_turn(self) -> None:
        self._in_turn = False
        self._speaking = False
        self._audio = bytearray()
        self._phrase_start = 0  # byte offset where the next phrase begins
        self._passes: list[asyncio.Task[str]] = []
        self._turn_timer: asyncio.Task | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self._on_audio(frame)
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            await self._on_speech_started()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            await self._on_speech_paused()
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, (EndFrame, CancelFrame)):
            await self._abandon_turn()
        await self.push_frame(frame, direction)

    async def _on_audio(self, frame: InputAudioRawFrame) -> None:
        if frame.sample_rate != self._rate or frame.num_channels != 1:
            raise ValueError(f"IncrementalWhisperSTT needs 16 kHz mono, got {frame.sample_rate} Hz")
        if self._in_turn:
            self._audio.extend(frame.audio)
            if self._speaking and len(self._audio) - self._phrase_start > 2 * self._max_phrase_samples:
                self._start_pass()  # a very long phrase: transcribe it before Whisper's window fills
        else:
            self._pre_roll.append(frame.audio)

    async def _on_speech_started(self) -> None:
        self._speaking = True
        if self._turn_timer is not None:  # the patient went on after a short pause
            await self.cancel_task(self._turn_timer)
            self._turn_timer = None
            await self._push_interim()
            return
        if self._in_turn:
            return
        self._in_turn = True
        self._audio = bytearray(b"".join(self._pre_roll))
        self._pre_roll.clear()
        if self._bot_speaking:
            await self.broadcast_interruption()  # barge-in: the agent stops at once
        await self.broadcast_frame(UserStartedSpeakingFrame)

    async def _on_speech_paused(self) -> None:
        if not self._in_turn:
            return
        self._speaking = False
        self._start_pass()
        self._turn_timer = self.create_task(self._end_turn_after_silence(), "turn-timer")

    def _start_pass(self) -> None:
        """Transcribe the phrase since the last pass, chained after the passes before it."""
        end = len(self._audio)
        if (end - self._phrase_start) // 2 < self._min_speech_samples:
            return  # too short to be a phrase; it stays in the next one
        phrase = np.frombuffer(bytes(self._audio[self._phrase_start : end]), dtype=np.int16)
        self._phrase_start = end
        previous = self._passes[-1] if self._passes else None
        self._passes.append(self.create_task(self._transcribe_after(previous, phrase), "stt-pass"))

    async def _transcribe_after(self, previous: asyncio.Task[str] | None, phrase: np.ndarray) -> str:
        prompt = await previous if previous is not None else ""
        text = await self._transcriber.transcribe_async(phrase, prompt=prompt[-200:])
        return f"{prompt} {text}".strip()

    async def _push_interim(self) -> None:
        done = [task for task in self._passes if task.done()]
        if done and not done[-1].cancelled():
            text = done[-1].result()
            if text:
                await self.push_frame(
                    InterimTranscriptionFrame(text=text, user_id=PATIENT, timestamp=time_now_iso8601())
                )

    async def _end_turn_after_silence(self) -> None:
        await asyncio.sleep(self._turn_wait_s)
        text = await self._passes[-1] if self._passes else ""
        self._reset_turn()
        if text:
            frame = TranscriptionFrame(
                text=text, user_id=PATIENT, timestamp=time_now_iso8601(), finalized=True
            )
            await self.push_frame(frame)
        await self.broadcast_frame(UserStoppedSpeakingFrame)

    async def _abandon_turn(self) -> None:
        if self._turn_timer is not None:
            await self.cancel_task(self._turn_timer)
        for task in self._passes:
            await self.cancel_task(task)
        self._reset_turn()
