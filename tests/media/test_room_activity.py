"""A clinician talking with the patient keeps the session alive: their voice is activity, so a
long conversation in the room is not cut by the session's idle timeout."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from aiortc import MediaStreamTrack
from pipecat.frames.frames import Frame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from media.file_transport import FileReplayTransport
from media.room import ClinicianSpeakingFrame, Room
from pipeline.session import make_worker, run_worker

IDLE_TIMEOUT_S = 2.5
CLINICIAN_RATE = 48000


class PassThrough(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class QuietPatient:
    """A patient's side that says nothing (the microphone sends silence only)."""

    def connect_room(self, room: Room) -> None:
        pass

    def show_video(self, track: MediaStreamTrack | None) -> None:
        pass


def voice(seconds: float, level: float) -> np.ndarray:
    t = np.arange(int(CLINICIAN_RATE * seconds)) / CLINICIAN_RATE
    return (np.sin(2 * np.pi * 180 * t) * level).astype(np.int16)


async def session_with_room() -> tuple[Room, asyncio.Task]:
    transport = FileReplayTransport([], reply_timeout_s=0.1)  # silence in, nothing from the patient
    worker = make_worker(
        transport, [PassThrough()], idle_timeout_s=IDLE_TIMEOUT_S, activity_frames=(ClinicianSpeakingFrame,)
    )
    room = Room("room-activity", QuietPatient(), patient_rate=16000)
    room.attach_agent(worker)
    return room, asyncio.create_task(run_worker(worker))


async def talk(room: Room, seconds: float, level: float) -> None:
    """The clinician's microphone, 20 ms at a time (as the clinician's peer delivers it)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        room._clinician_said(voice(0.02, level), CLINICIAN_RATE)
        await asyncio.sleep(0.02)


async def test_a_clinician_talking_with_a_silent_patient_keeps_the_session_alive() -> None:
    room, session = await session_with_room()
    try:
        await talk(room, 2 * IDLE_TIMEOUT_S, level=6000)
        assert not session.done(), "the session was cut as idle while the clinician was talking"
        # Once the clinician stops, the idle timeout applies again.
        await asyncio.wait_for(asyncio.shield(session), IDLE_TIMEOUT_S + 3)
    finally:
        session.cancel()


async def test_a_silent_clinician_microphone_is_not_activity() -> None:
    room, session = await session_with_room()
    try:
        started = time.monotonic()
        talker = asyncio.create_task(talk(room, 2 * IDLE_TIMEOUT_S, level=20))  # room hiss
        await asyncio.wait_for(asyncio.shield(session), IDLE_TIMEOUT_S + 3)
        assert time.monotonic() - started < IDLE_TIMEOUT_S + 3
        talker.cancel()
    finally:
        session.cancel()
