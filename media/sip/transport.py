"""The pipecat transport of one phone call: RTP in and out of the same pipeline as the browser.

Input: every 20 ms (the local clock) the next frame leaves the jitter buffer, is resampled
8 -> 16 kHz and pushed as an ``InputAudioRawFrame``; keypad 0 becomes a
``ClinicianRequestFrame``. Output: the agent's 16 kHz audio is resampled to 8 kHz into a
play-out queue that a 20 ms clock sends as G.711 RTP (silence when the agent is quiet, so the
stream never stops); ``write_audio_frame`` returns once at most ``PLAYOUT_AHEAD`` frames are
queued, which paces the pipeline in real time. While the caller holds the call the agent is
paused: nothing is sent, what it says waits in the queue, the caller's audio is not heard.

Seams for a clinician joining the call (the room work): ``add_audio_source`` mixes another
voice into what the caller hears, ``tap_caller_audio`` hands out what the caller says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from media import room_audio
from media.resample import ChunkResampler, resample
from media.sip.g711 import SAMPLE_RATE as LINE_RATE
from media.sip.media import CallMedia
from media.sip.rtp import PTIME_S, SAMPLES_PER_PACKET
from pipeline.frames import ClinicianRequestFrame

log = logging.getLogger(__name__)
PIPELINE_RATE = 16000  # what the pipeline hears and what the agent's voice is made at
PLAYOUT_AHEAD = 3  # frames queued ahead of the send clock (60 ms)
MAX_QUEUED_S = 30.0  # what the agent said while on hold, kept for when the caller returns
CLINICIAN_DIGIT = "0"


class AudioSource(Protocol):
    """Another voice for the caller (a clinician): 8 kHz int16, ``samples`` long, or None."""

    def read(self, samples: int) -> np.ndarray | None: ...


CallerTap = Callable[[np.ndarray], None]  # 20 ms of the caller, 16 kHz int16


class _Clock:
    """A 20 ms tick on the monotonic clock that catches up, or skips ahead after a stall."""

    def __init__(self) -> None:
        self._next = time.monotonic()

    async def tick(self) -> None:
        self._next += PTIME_S
        delay = self._next - time.monotonic()
        if delay < -0.2:
            self._next = time.monotonic()
            delay = 0.0
        await asyncio.sleep(max(0.0, delay))


class _Playout:
    """The agent's audio waiting for the send clock (8 kHz int16), oldest first."""

    def __init__(self) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(samples)
            self._size += samples.size
        limit = int(MAX_QUEUED_S * LINE_RATE)
        while self._chunks and self._size - self._chunks[0].size >= limit:
            self._size -= self._chunks.popleft().size

    def take(self, count: int) -> np.ndarray | None:
        """The next ``count`` samples (padded with silence), or None when nothing waits."""
        if not self._size:
            return None
        out = np.zeros(count, dtype=np.int16)
        filled = 0
        while filled < count and self._chunks:
            head = self._chunks[0]
            n = min(count - filled, head.size)
            out[filled : filled + n] = head[:n]
            if n == head.size:
                self._chunks.popleft()
            else:
                self._chunks[0] = head[n:]
            filled += n
        self._size -= filled
        return out

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0


class _SipInput(BaseInputTransport):
    def __init__(self, params: TransportParams, owner: SipCallTransport) -> None:
        super().__init__(params)
        self._owner = owner
        self._resampler = ChunkResampler(LINE_RATE, PIPELINE_RATE)
        self._task: asyncio.Task | None = None

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._task = self.create_task(self._microphone(), "sip-microphone")

    async def _stop(self) -> None:
        if self._task is not None:
            await self.cancel_task(self._task)
            self._task = None

    async def stop(self, frame: EndFrame) -> None:
        await self._stop()
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await self._stop()
        await super().cancel(frame)

    async def _microphone(self) -> None:
        owner = self._owner
        clock = _Clock()
        pending = np.zeros(0, dtype=np.int16)
        chunk = int(PIPELINE_RATE * PTIME_S)
        while True:
            while not owner.digits.empty():
                await self._on_digit(owner.digits.get_nowait())
            line = owner.media.read_frame()
            pending = np.concatenate([pending, self._resampler.process(line)])
            while pending.size >= chunk:
                piece, pending = pending[:chunk], pending[chunk:]
                for tap in list(owner.taps):
                    tap(piece)
                await self.push_audio_frame(
                    InputAudioRawFrame(audio=piece.tobytes(), sample_rate=PIPELINE_RATE, num_channels=1)
                )
            await clock.tick()

    async def _on_digit(self, digit: str) -> None:
        if digit == CLINICIAN_DIGIT:
            log.info("keypad: clinician requested")
            await self.push_frame(ClinicianRequestFrame(how="phone keypad 0"))
        else:
            log.info("keypad: digit ignored")


class _SipOutput(BaseOutputTransport):
    def __init__(self, params: TransportParams, owner: SipCallTransport) -> None:
        super().__init__(params)
        self._owner = owner
        self._resampler = ChunkResampler(PIPELINE_RATE, LINE_RATE)
        self._playout = _Playout()
        self._sent = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._task = self.create_task(self._send_clock(), "sip-rtp-sender")
        self._owner.ready.set()

    async def _stop(self) -> None:
        if self._task is not None:
            await self.cancel_task(self._task)
            self._task = None

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self._stop()

    async def cancel(self, frame: CancelFrame) -> None:
        await self._stop()
        await super().cancel(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, InterruptionFrame):
            self._playout.clear()  # barge-in: the caller stops hearing the agent at once
            self._resampler.reset()
        await super().process_frame(frame, direction)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        samples = np.frombuffer(frame.audio, dtype=np.int16)
        if frame.num_channels > 1:
            samples = samples.reshape(-1, frame.num_channels)[:, 0]
        if frame.sample_rate != PIPELINE_RATE:  # the pipeline is set up for 16 kHz; just in case
            samples = resample(samples, frame.sample_rate, PIPELINE_RATE)
        self._playout.append(self._resampler.process(samples))
        limit = PLAYOUT_AHEAD * SAMPLES_PER_PACKET
        while len(self._playout) > limit and self._owner.media.negotiated.caller_receives:
            self._sent.clear()
            await self._sent.wait()
        return True

    async def _send_clock(self) -> None:
        owner = self._owner
        await owner.answered.wait()
        clock = _Clock()
        silence = np.zeros(SAMPLES_PER_PACKET, dtype=np.int16)
        while True:
            if owner.media.negotiated.caller_receives:
                frame = self._playout.take(SAMPLES_PER_PACKET)
                frame = silence if frame is None else frame
                for tap in list(owner.agent_taps):
                    tap(frame)
                frame = owner.mix(frame)
                owner.media.send_frame(frame)
            self._sent.set()
            await clock.tick()


class SipCallTransport(BaseTransport):
    """One call's transport; ``ready`` is set once the whole pipeline has started."""

    def __init__(self, media: CallMedia) -> None:
        super().__init__()
        self.media = media
        self.ready = asyncio.Event()  # the pipeline is up: answer the call
        self.answered = asyncio.Event()  # the 200 OK is out: start sending
        self.digits: asyncio.Queue[str] = asyncio.Queue(maxsize=64)
        self.taps: list[CallerTap] = []
        self.agent_taps: list[CallerTap] = []
        self._sources: list[AudioSource] = []
        params = TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=PIPELINE_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=PIPELINE_RATE,
            audio_out_10ms_chunks=2,
            audio_out_end_silence_secs=0,
        )
        self._input = _SipInput(params, self)
        self._output = _SipOutput(params, self)
        media.on_digit = self.press

    def input(self) -> FrameProcessor:
        return self._input

    def output(self) -> FrameProcessor:
        return self._output

    def press(self, digit: str) -> None:
        """A keypad digit from the caller (RTP event or SIP INFO)."""
        if not self.digits.full():
            self.digits.put_nowait(digit)

    def add_audio_source(self, source: AudioSource) -> Callable[[], None]:
        """Mix ``source`` into what the caller hears; returns the function that removes it."""
        self._sources.append(source)
        return lambda: self._sources.remove(source) if source in self._sources else None

    def tap_agent_audio(self, tap: CallerTap) -> Callable[[], None]:
        """Call ``tap`` with every 20 ms of the agent's voice as the caller hears it (8 kHz)."""
        self.agent_taps.append(tap)
        return lambda: self.agent_taps.remove(tap) if tap in self.agent_taps else None

    def tap_caller_audio(self, tap: CallerTap) -> Callable[[], None]:
        """Call ``tap`` with every 20 ms of the caller (16 kHz); returns the function that stops it."""
        self.taps.append(tap)
        return lambda: self.taps.remove(tap) if tap in self.taps else None

    def mix(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` with the added sources' next ``frame.size`` samples mixed in (the room's mixer)."""
        if not self._sources:
            return frame
        extras = [source.read(frame.size) for source in list(self._sources)]
        voices = [extra for extra in extras if extra is not None and extra.size == frame.size]
        return room_audio.mix(frame, *voices)
