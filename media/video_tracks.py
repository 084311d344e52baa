"""A WebRTC video track that shows the latest picture it was given (a participant's camera)."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc import MediaStreamTrack

VIDEO_CLOCK = 90000


class LatestFrameTrack(MediaStreamTrack):
    """Sends the most recent RGB frame at ``fps`` (a black frame until the first one arrives)."""

    kind = "video"

    def __init__(self, fps: float = 10.0, size: tuple[int, int] = (320, 240)) -> None:
        super().__init__()
        self._period = 1.0 / fps
        self._latest = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        self._start: float | None = None
        self._count = 0

    def show(self, rgb: np.ndarray) -> None:
        self._latest = rgb

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count * self._period
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = av.VideoFrame.from_ndarray(self._latest, format="rgb24")
        frame.pts = int(self._count * self._period * VIDEO_CLOCK)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._count += 1
        return frame
