"""Audio plumbing of a room: rings that carry live audio between participants, and the tracks
that play them.

Every listener has its own ``AudioRing`` per source, at the listener's rate: a source pushes
its audio into the rings of everyone who should hear it (resampled by a ``ChunkResampler``: 5 ms
late, and chunk edges do not click), and the listener's track pulls the samples it needs every
10-20 ms, mixing its rings with ``mix`` (the phone call mixes a clinician in with it too). A ring
holds at most ``max_s`` seconds: a listener that falls behind loses the oldest audio rather than
drifting further behind.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import AUDIO_PTIME, MediaStreamError

from media.resample import ChunkResampler


class AudioRing:
    """Live audio for one listener from one source, at the listener's sample rate."""

    def __init__(self, rate: int, max_s: float = 1.0) -> None:
        self.rate = rate
        self._max = int(rate * max_s)
        self._buffer = np.zeros(0, dtype=np.int16)
        self._resamplers: dict[int, ChunkResampler] = {}

    def push(self, samples: np.ndarray, rate: int) -> None:
        """Add mono int16 ``samples`` recorded at ``rate``."""
        if samples.size == 0:
            return
        if rate != self.rate:
            resampler = self._resamplers.get(rate)
            if resampler is None:
                resampler = self._resamplers[rate] = ChunkResampler(rate, self.rate)
            samples = resampler.process(samples)
        self._buffer = np.concatenate([self._buffer, samples])[-self._max :]

    def pull(self, count: int) -> np.ndarray:
        """The next ``count`` samples, padded with silence when the source is quiet."""
        out = np.zeros(count, dtype=np.int16)
        taken = self._buffer[:count]
        out[: taken.size] = taken
        self._buffer = self._buffer[taken.size :]
        return out

    def __len__(self) -> int:
        return int(self._buffer.size)


def mix(*parts: np.ndarray) -> np.ndarray:
    """Sum int16 signals of the same length, clipped rather than wrapped around (no loud clicks)."""
    total = np.sum([part.astype(np.int32) for part in parts], axis=0)
    return np.clip(total, -32768, 32767).astype(np.int16)


def audio_frame(samples: np.ndarray, rate: int, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, rate)
    return frame


class RingMixTrack(MediaStreamTrack):
    """An outgoing WebRTC audio track playing the sum of some rings, 20 ms at a time, in real time."""

    kind = "audio"

    def __init__(self, rings: list[AudioRing], rate: int = 48000) -> None:
        super().__init__()
        self._rings = rings
        self._rate = rate
        self._start: float | None = None
        self._sent = 0  # samples

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        count = int(self._rate * AUDIO_PTIME)
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self._sent / self._rate - time.monotonic()))
        pulled = [ring.pull(count) for ring in self._rings]
        samples = mix(*pulled) if pulled else np.zeros(count, np.int16)
        frame = audio_frame(samples, self._rate, self._sent)
        self._sent += count
        return frame


class OverlayTrack(MediaStreamTrack):
    """Wraps an outgoing audio track: adds a ring (another participant) and reports what it sent.

    The agent's voice track keeps its own pacing; ``on_frame`` sees exactly what the patient
    hears of the agent, in real time (barge-in included), so others can hear it too.
    """

    kind = "audio"

    def __init__(
        self,
        inner: MediaStreamTrack,
        overlay: AudioRing | None = None,
        on_frame: Callable[[np.ndarray, int], None] | None = None,
    ) -> None:
        super().__init__()
        self._inner = inner
        self.overlay = overlay
        self._on_frame = on_frame

    async def recv(self) -> av.AudioFrame:
        frame = await self._inner.recv()
        samples = frame.to_ndarray().reshape(-1).astype(np.int16)
        if frame.layout.nb_channels > 1:
            samples = samples.reshape(-1, frame.layout.nb_channels)[:, 0]
        if self._on_frame is not None:
            self._on_frame(samples, frame.sample_rate)
        if self.overlay is None or len(self.overlay) == 0:
            return frame
        return audio_frame(mix(samples, self.overlay.pull(samples.size)), frame.sample_rate, frame.pts)

    def stop(self) -> None:
        super().stop()
