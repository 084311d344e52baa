"""A browser patient's camera is decoded only as often as someone needs it: at the camera
sampler's rate while only the agent looks, at the clinician's view's rate while a clinician is
in the room, and back to the sampler's rate when they leave."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcicetransport import RTCIceGatherer
from pipecat.frames.frames import Frame
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection

from media.room import Room
from media.webrtc_patient import WATCHED_FPS, BrowserPatient
from pipeline.camera import ACTIVE_EVERY_S, FRAMES_NEEDED_FPS
from pipeline.frames import ClinicianJoinedFrame, ClinicianLeftFrame
from web.webrtc_sessions import transport_params


class RecordingCamera:
    """The transport's camera input: the rates it was told to pass on (a fake)."""

    def __init__(self) -> None:
        self.rates: list[tuple[str, int]] = []

    async def capture_participant_video(self, participant_id: str, framerate: int, video_source: str) -> None:
        self.rates.append((video_source, framerate))


class Agent:
    """The session's worker, as the room sees it: the frames it is told."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []

    async def queue_frame(self, frame: Frame) -> None:
        self.frames.append(frame)


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE on 127.0.0.1 only and no STUN server (aiortc's default is a public one)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    monkeypatch.setattr(RTCIceGatherer, "getDefaultIceServers", classmethod(lambda cls: []))


@dataclass
class Session:
    room: Room
    patient: BrowserPatient
    camera: RecordingCamera
    agent: Agent


@pytest.fixture
async def session(loopback_ice: None) -> AsyncIterator[Session]:
    """A browser patient's room, as the host gives it to a session."""
    connection = SmallWebRTCConnection(ice_servers=[])
    camera = RecordingCamera()
    patient = BrowserPatient(connection, camera=camera)
    room = Room("camera-rate", patient, patient_rate=24000)
    patient.connect_room(room)
    agent = Agent()
    room.attach_agent(agent)  # type: ignore[arg-type]  # the room only queues frames to it
    yield Session(room, patient, camera, agent)
    await room.close()
    await connection.disconnect()


async def clinician_offer() -> tuple[RTCPeerConnection, str]:
    """A clinician's browser: it listens and watches (no microphone or camera of its own here)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def test_the_sampler_needs_no_more_than_two_frames_a_second() -> None:
    # It judges one frame a second at most: two a second is enough, eight (the old rate) is not needed.
    assert FRAMES_NEEDED_FPS * ACTIVE_EVERY_S == 2
    assert transport_params().video_in_sources["camera"].framerate == FRAMES_NEEDED_FPS


async def test_the_camera_is_at_the_samplers_rate_until_a_clinician_joins_and_after_they_leave(
    session: Session,
) -> None:
    patient, camera = session.patient, session.camera
    assert patient.camera_fps == FRAMES_NEEDED_FPS  # only the agent looks
    assert camera.rates == []  # the transport starts at its parameters' rate (the sampler's)

    clinician, offer = await clinician_offer()
    try:
        answer = await session.room.join("Dr. Rate", offer, "offer")
        assert answer["type"] == "answer"
        assert patient.camera_fps == WATCHED_FPS > FRAMES_NEEDED_FPS
        assert camera.rates == [("camera", WATCHED_FPS)]  # the clinician's view is not degraded

        await session.room.hand_back()
        assert patient.camera_fps == FRAMES_NEEDED_FPS
        assert camera.rates == [("camera", WATCHED_FPS), ("camera", FRAMES_NEEDED_FPS)]
    finally:
        await clinician.close()
    told = [type(f) for f in session.agent.frames]
    assert told == [ClinicianJoinedFrame, ClinicianLeftFrame]  # the page is told both (its rate follows)


async def test_a_reconnecting_patient_keeps_the_rate_of_a_watching_clinician(
    session: Session,
) -> None:
    patient, camera = session.patient, session.camera
    await patient.clinician_watching(True)
    # The transport resets the camera to its parameters' rate on each connection: put it back.
    await patient.on_connected()
    assert camera.rates[-1] == ("camera", WATCHED_FPS)
