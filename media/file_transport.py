"""A transport that plays recorded patient turns in real time and records what the agent says.

It stands in for the browser in replays, evaluations and benchmarks: the input is a
microphone that plays each patient turn once the agent's previous reply has finished (and
sends silence in between, as a real microphone does); the output is a speaker that plays
the agent's audio in real time, so barge-in and latency behave as they would live.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    StartFrame,
    UserImageRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

CHUNK_S = 0.02


@dataclass
class PlayedTurn:
    """When a patient turn was played, in seconds since the session started."""

    start_s: float
    speech_start_s: float
    speech_end_s: float
    end_s: float


@dataclass
class ReplayTimeline:
    """What crossed the transport, on one clock."""

    input_rate: int
    t0: float = 0.0
    patient_turns: list[PlayedTurn] = field(default_factory=list)
    patient_audio: list[tuple[float, np.ndarray]] = field(default_factory=list)
    agent_audio: list[tuple[float, np.ndarray]] = field(default_factory=list)
    agent_rate: int = 0
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    # When each patient turn's first sample reached the microphone (one per played turn, in
    # order): the exact time base for positions inside a turn (its pauses, its true end).
    turn_audio_starts_s: list[float] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0


@dataclass
class PatientTurnAudio:
    samples: np.ndarray  # int16 mono at the input rate
    speech_start_s: float
    speech_end_s: float
    # None: played once the agent's reply has finished. A number: played that many seconds
    # after the agent starts its reply -- the patient talks over the agent (barge-in).
    barge_in_after_s: float | None = None


# After the recorded turns: the next turn, made when the agent has answered (a simulated
# patient answering the agent's question), or None when the patient has nothing more to say.
NextTurn = Callable[[], Awaitable[PatientTurnAudio | None]]


class _FileInput(BaseInputTransport):
    def __init__(
        self,
        params: TransportParams,
        turns: list[PatientTurnAudio],
        timeline: ReplayTimeline,
        image: tuple[bytes, tuple[int, int], str] | None,
        reply_idle_s: float,
        reply_timeout_s: float,
        next_turn: NextTurn | None = None,
    ) -> None:
        super().__init__(params)
        self._turns = turns
        self._next_turn = next_turn
        self._timeline = timeline
        self._image = image
        self._reply_idle_s = reply_idle_s
        self._reply_timeout_s = reply_timeout_s
        self._bot_speaking = False
        self._bot_changed = asyncio.Event()
        self._last_bot_stop = 0.0
        self._playing: np.ndarray | None = None
        self._played = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._timeline.t0 = time.monotonic()
        self._tasks = [
            self.create_task(self._microphone(), "replay-microphone"),
            self.create_task(self._script(), "replay-script"),
        ]
        if self._image is not None:
            self._tasks.append(self.create_task(self._camera(), "replay-camera"))

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            await self.cancel_task(task)
        self._tasks = []

    async def stop(self, frame: EndFrame) -> None:
        await self._stop_tasks()
        await super().stop(frame)

    async def cancel(self, frame) -> None:  # type: ignore[override]
        await self._stop_tasks()
        await super().cancel(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
            self._bot_changed.set()
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
            self._last_bot_stop = time.monotonic()
            self._bot_changed.set()
        await super().process_frame(frame, direction)

    async def _microphone(self) -> None:
        """Push 20 ms of audio per tick: the current turn, or silence."""
        rate = self._timeline.input_rate
        chunk = int(rate * CHUNK_S)
        silence = np.zeros(chunk, dtype=np.int16)
        position = 0
        tick = time.monotonic()
        while True:
            if self._playing is not None:
                if position == 0:
                    self._timeline.turn_audio_starts_s.append(tick - self._timeline.t0)
                piece = self._playing[position : position + chunk]
                position += chunk
                if position >= self._playing.size:
                    self._playing, position = None, 0
                    self._played.set()
                if piece.size < chunk:
                    piece = np.concatenate([piece, silence[: chunk - piece.size]])
                self._timeline.patient_audio.append((tick - self._timeline.t0, piece))
            else:
                piece = silence
            await self.push_audio_frame(
                InputAudioRawFrame(audio=piece.tobytes(), sample_rate=rate, num_channels=1)
            )
            tick += CHUNK_S
            await asyncio.sleep(max(0.0, tick - time.monotonic()))

    async def _camera(self) -> None:
        assert self._image is not None
        data, size, fmt = self._image
        while True:
            await self.push_video_frame(UserImageRawFrame(image=data, size=size, format=fmt))
            await asyncio.sleep(0.5)

    async def _wait_for_reply(self) -> None:
        """Until the agent has spoken and then stayed quiet for ``reply_idle_s``."""
        deadline = time.monotonic() + self._reply_timeout_s
        spoke = self._bot_speaking
        while time.monotonic() < deadline:
            if self._bot_speaking:
                spoke = True
            elif spoke and time.monotonic() - self._last_bot_stop >= self._reply_idle_s:
                return
            self._bot_changed.clear()
            try:
                await asyncio.wait_for(self._bot_changed.wait(), timeout=0.05)
            except TimeoutError:
                pass

    async def _wait_for_agent_to_speak(self) -> None:
        deadline = time.monotonic() + self._reply_timeout_s
        while not self._bot_speaking and time.monotonic() < deadline:
            self._bot_changed.clear()
            try:
                await asyncio.wait_for(self._bot_changed.wait(), timeout=0.05)
            except TimeoutError:
                pass

    async def _script(self) -> None:
        recorded = iter(self._turns)
        while True:
            turn = next(recorded, None)
            if turn is None and self._next_turn is None:
                await self._wait_for_reply()  # the answer to the last turn
                break
            if turn is None or turn.barge_in_after_s is None:
                await self._wait_for_reply()  # the greeting, or the answer to the previous turn
            else:
                await self._wait_for_agent_to_speak()
                await asyncio.sleep(turn.barge_in_after_s)
            if turn is None:
                assert self._next_turn is not None
                turn = await self._next_turn()  # what the patient says to that answer
                if turn is None:
                    break
            start = self._timeline.now()
            self._played.clear()
            self._playing = turn.samples
            await self._played.wait()
            self._timeline.patient_turns.append(
                PlayedTurn(
                    start_s=start,
                    speech_start_s=start + turn.speech_start_s,
                    speech_end_s=start + turn.speech_end_s,
                    end_s=self._timeline.now(),
                )
            )
        self._timeline.finished.set()


class _RecordingOutput(BaseOutputTransport):
    """A speaker that plays in real time and remembers when each sound was played."""

    def __init__(self, params: TransportParams, timeline: ReplayTimeline) -> None:
        super().__init__(params)
        self._timeline = timeline
        self._playhead = 0.0

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        now = self._timeline.now()
        self._playhead = max(self._playhead, now)
        samples = np.frombuffer(frame.audio, dtype=np.int16)
        if frame.num_channels > 1:
            samples = samples.reshape(-1, frame.num_channels)[:, 0]
        self._timeline.agent_rate = frame.sample_rate
        if np.any(samples):
            self._timeline.agent_audio.append((self._playhead, samples.copy()))
        self._playhead += samples.size / frame.sample_rate
        await asyncio.sleep(max(0.0, self._playhead - self._timeline.now() - CHUNK_S))
        return True


class FileReplayTransport(BaseTransport):
    """Patient turns in, agent audio recorded, on one session clock."""

    def __init__(
        self,
        turns: list[PatientTurnAudio],
        *,
        input_rate: int = 16000,
        output_rate: int = 16000,
        image: tuple[bytes, tuple[int, int], str] | None = None,
        reply_idle_s: float = 1.0,
        reply_timeout_s: float = 20.0,
        next_turn: NextTurn | None = None,
    ) -> None:
        super().__init__()
        self.timeline = ReplayTimeline(input_rate=input_rate)
        params = TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=input_rate,
            audio_out_enabled=True,
            audio_out_sample_rate=output_rate,
            video_in_enabled=image is not None,
        )
        self._input = _FileInput(
            params, turns, self.timeline, image, reply_idle_s, reply_timeout_s, next_turn
        )
        self._output = _RecordingOutput(params, self.timeline)

    def input(self) -> FrameProcessor:
        return self._input

    def output(self) -> FrameProcessor:
        return self._output
