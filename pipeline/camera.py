"""The camera sampler: looks at a few frames, keeps the best one, and says when none is usable.

While the patient is speaking (or no usable frame is kept yet) one frame is judged every
``active_every_s``; otherwise every ``idle_every_s``. So the sampler needs no more than
``FRAMES_NEEDED_FPS`` from the transport: the browser transport decodes the camera at that rate
while no clinician watches, and asks the page to send no more. Raw video never travels further
down the pipeline: only a ``CameraStillFrame`` when a better frame than the kept one is seen,
JPEG-encoded.
"""

from __future__ import annotations

import asyncio
import io
import math
import time

import numpy as np
from PIL import Image
from pipecat.frames.frames import (
    Frame,
    InputImageRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.backends.base import CameraImage
from pipeline.frames import CameraStillFrame
from pipeline.image_quality import FrameQuality, judge

ACTIVE_EVERY_S = 1.0  # a frame judged each second while the patient speaks or none is kept yet
IDLE_EVERY_S = 4.0  # otherwise one every four seconds
# The frames a second the sampler needs: two per look at its fastest, so a frame that arrives a
# little early for a look is followed by one soon after, not a whole look later.
FRAMES_NEEDED_FPS = math.ceil(2 / ACTIVE_EVERY_S)


class CameraSampler(FrameProcessor):
    def __init__(self, *, active_every_s: float = ACTIVE_EVERY_S, idle_every_s: float = IDLE_EVERY_S) -> None:
        super().__init__()
        self._active_every_s = active_every_s
        self._idle_every_s = idle_every_s
        self._patient_speaking = False
        self._last_judged = 0.0
        self._best: FrameQuality | None = None

    @property
    def best(self) -> FrameQuality | None:
        return self._best

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputImageRawFrame):
            await self._sample(frame)
            return  # raw video stops here
        if isinstance(frame, UserStartedSpeakingFrame):
            self._patient_speaking = True
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._patient_speaking = False
        await self.push_frame(frame, direction)

    async def _sample(self, frame: InputImageRawFrame) -> None:
        every = self._active_every_s if self._patient_speaking or self._best is None else self._idle_every_s
        now = time.monotonic()
        if now - self._last_judged < every:
            return
        self._last_judged = now
        rgb = _as_rgb(frame)
        if rgb is None:
            return
        quality = await asyncio.to_thread(judge, rgb)
        if self._best is None or quality.score > self._best.score:
            self._best = quality
            jpeg = await asyncio.to_thread(_jpeg, rgb)
            image = CameraImage(jpeg=jpeg, width=rgb.shape[1], height=rgb.shape[0], quality=quality.verdict)
            await self.push_frame(CameraStillFrame(image=image))


def _as_rgb(frame: InputImageRawFrame) -> np.ndarray | None:
    width, height = frame.size
    if frame.format not in (None, "RGB") or len(frame.image) != width * height * 3:
        try:
            with Image.open(io.BytesIO(frame.image)) as img:
                return np.asarray(img.convert("RGB"))
        except OSError:
            return None
    return np.frombuffer(frame.image, dtype=np.uint8).reshape(height, width, 3)


def _jpeg(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=85)
    return out.getvalue()
