"""The room observer: the patient's microphone and camera, as the session receives them, to the room.

A clinician in the room hears and sees the patient through this tap; the pipeline itself is
untouched (observers only watch frames go by).
"""

from __future__ import annotations

import numpy as np
from pipecat.frames.frames import InputAudioRawFrame, InputImageRawFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameProcessor

from media.room import Room


class RoomObserver(BaseObserver):
    def __init__(self, room: Room, transport_input: FrameProcessor) -> None:
        super().__init__()
        self._room = room
        self._input = transport_input

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.source is not self._input:
            return
        frame = data.frame
        if isinstance(frame, InputAudioRawFrame):
            samples = np.frombuffer(frame.audio, dtype=np.int16)
            if frame.num_channels > 1:
                samples = samples.reshape(-1, frame.num_channels)[:, 0]
            self._room.patient_said(samples, frame.sample_rate)
        elif isinstance(frame, InputImageRawFrame) and frame.format in (None, "RGB"):
            width, height = frame.size
            if len(frame.image) == width * height * 3:
                rgb = np.frombuffer(frame.image, dtype=np.uint8).reshape(height, width, 3)
                self._room.patient_showed(rgb[::2, ::2].copy() if width > 400 else rgb)
