"""A session in a LiveKit room: the agent joins through pipecat's LiveKit transport with its own
token, publishes its voice, hears the patient (and not the clinician), is told when a clinician
comes and goes, and the session ends with the patient. No LiveKit server can run here: the
LiveKit room (``livekit.rtc.Room``, the connection pipecat's transport drives) is a fake that
records what the agent does and delivers participants' audio; the rest is the real transport,
the real session host and a pass-through pipeline instead of the models.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
from aiohttp import web
from livekit import api, rtc
from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from configs.settings import LiveKitSettings, Settings
from media.host import LinesBusy, SessionHost
from media.livekit_access import Role, RoomAdmin
from media.livekit_rooms import LiveKitRooms
from pipeline.frames import ClinicianExit, ClinicianJoinedFrame, ClinicianLeftFrame
from pipeline.session import SessionContext
from tests.media.livekit_fakes import URL, FakeRoom, claims_of, fake_livekit, livekit_config, tone

__all__ = ["fake_livekit"]  # the fixture, used by name


@pytest.fixture(autouse=True)
def _fake_livekit(fake_livekit: None) -> None:
    """Every test here drives the fake LiveKit connection (tests/media/livekit_fakes.py)."""


# --- the session: the real host with a pass-through pipeline --------------------------------


class Echo(FrameProcessor):
    """Says back what it hears (the agent's voice), and keeps the other frames it is told."""

    def __init__(self) -> None:
        super().__init__()
        self.heard: list[np.ndarray] = []
        self.told: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.heard.append(np.frombuffer(frame.audio, dtype=np.int16))
            await self.push_frame(OutputAudioRawFrame(frame.audio, frame.sample_rate, 1))
            return
        if isinstance(frame, (ClinicianJoinedFrame, ClinicianLeftFrame)):
            self.told.append(frame)
        await self.push_frame(frame, direction)


class EchoHost(SessionHost):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.echoes: list[Echo] = []

    def session_processors(self, context: SessionContext) -> list[FrameProcessor]:
        self.echoes.append(Echo())
        return [self.echoes[-1]]


class FakeAdmin:
    def __init__(self) -> None:
        self.removed: list[tuple[str, str]] = []

    async def remove(self, room: str, identity: str) -> None:
        self.removed.append((room, identity))


@pytest.fixture
def livekit_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "livekit": type(settings.livekit).model_validate(livekit_config()),
            "sessions": settings.sessions.model_copy(update={"max_concurrent": 1}),
        }
    )


@pytest.fixture
async def rooms(livekit_settings: Settings) -> AsyncIterator[tuple[LiveKitRooms, EchoHost, FakeAdmin]]:
    host, admin = EchoHost(livekit_settings), FakeAdmin()
    rooms = LiveKitRooms(host, livekit_settings, connect_deadline_s=3.0, admin=admin)  # type: ignore[arg-type]
    yield rooms, host, admin
    await rooms.close()


async def until(condition: Callable[[], bool], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


def rms(chunks: list[np.ndarray]) -> float:
    samples = np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(1)
    return float(np.sqrt(np.mean(samples**2)))


# --- the tests ----------------------------------------------------------------------------


async def test_the_agent_joins_the_patients_room_as_the_agent_and_answers_the_patient_only(
    rooms: tuple[LiveKitRooms, EchoHost, FakeAdmin],
) -> None:
    livekit, host, _admin = rooms
    patient = await livekit.open()
    patient_claims = claims_of(patient.token)
    assert patient_claims.identity.startswith("patient-") and patient_claims.video.room == patient.room

    assert await until(lambda: bool(FakeRoom.rooms) and FakeRoom.rooms[0].connected_to is not None)
    room = FakeRoom.rooms[0]
    url, token = room.connected_to or ("", "")
    agent = claims_of(token)
    assert url == URL and agent.kind == "agent" and agent.identity.startswith("agent-")
    assert agent.video.room == patient.room and agent.video.agent and not agent.video.room_admin
    [(track, source)] = room.local_participant.published  # its voice, as a microphone
    assert source == rtc.TrackSource.SOURCE_MICROPHONE and track.name == "pipecat-audio"
    assert livekit.is_live(patient.room) and host.live[patient.room].transport.value == "livekit"

    room.join("clinician-abc123", tone(600, 8000))  # not minted for this room: not announced
    room.join(patient_claims.identity, tone(1000, 8000))
    [echo] = host.echoes
    assert await until(lambda: sum(len(c) for c in echo.heard) >= 16000 * 0.4)
    await asyncio.sleep(0.3)  # the clinician's half second has long been delivered too
    heard = np.concatenate(echo.heard)
    assert len(heard) < 16000 * 0.6, "the clinician's audio reached the pipeline"
    assert 3000 < rms(echo.heard) < 8000  # the patient's tone, resampled to 16 kHz
    # The agent spoke back into the room: its voice, at 24 kHz, on its published track.
    assert await until(lambda: sum(f.samples_per_channel for f in room.source.frames) >= 24000 * 0.35)
    assert {f.sample_rate for f in room.source.frames} == {24000}
    assert 3000 < rms([np.frombuffer(f.data, dtype=np.int16) for f in room.source.frames]) < 8000
    assert not echo.told

    room.leave(patient_claims.identity)  # the patient hangs up: heard out, then the end
    assert await until(lambda: not host.live and not len(livekit), 15)
    assert host.in_use() == 0 and room.disconnected


async def test_a_clinician_gets_a_token_for_that_room_is_announced_when_in_it_and_removed_on_hand_back(
    rooms: tuple[LiveKitRooms, EchoHost, FakeAdmin],
) -> None:
    livekit, host, admin = rooms
    patient = await livekit.open()
    assert await until(lambda: bool(FakeRoom.rooms) and FakeRoom.rooms[0].connected_to is not None)
    room = FakeRoom.rooms[0]
    room.join(claims_of(patient.token).identity, tone(1000, 4000, 0.1))

    access = await livekit.join(patient.room, "Dr Okafor", "", "")
    clinician = claims_of(access["token"])
    assert access["url"] == URL and access["room"] == patient.room
    assert clinician.identity.startswith(f"{Role.CLINICIAN.value}-") and clinician.name == "Dr Okafor"
    assert clinician.video.room == patient.room and clinician.video.can_publish_sources == [
        "microphone",
        "camera",
    ]
    assert not (clinician.video.agent or clinician.video.room_admin or clinician.video.can_publish_data)
    [echo] = host.echoes
    assert not echo.told  # a token is not a clinician in the room

    room.join(clinician.identity, tone(600, 8000, 0.1))
    assert await until(lambda: len(echo.told) == 1)
    assert isinstance(echo.told[0], ClinicianJoinedFrame) and echo.told[0].clinician == "Dr Okafor"

    await livekit.hand_back(patient.room)
    assert admin.removed == [(patient.room, clinician.identity)]
    assert await until(lambda: len(echo.told) == 2)
    left = echo.told[1]
    assert isinstance(left, ClinicianLeftFrame) and left.outcome == ClinicianExit.HANDED_BACK


async def test_a_session_is_admitted_under_the_line_cap_and_ends_when_the_patient_never_comes(
    rooms: tuple[LiveKitRooms, EchoHost, FakeAdmin],
) -> None:
    livekit, host, _admin = rooms
    await livekit.open()
    with pytest.raises(LinesBusy):  # one line (SESSIONS__MAX_CONCURRENT=1), shared with every transport
        await livekit.open()
    assert len(FakeRoom.rooms) <= 1
    # Nobody joins the room within the deadline (3 s here): the agent leaves and the line is free.
    assert await until(lambda: not host.live and not len(livekit) and host.in_use() == 0, 15)
    assert FakeRoom.rooms[0].disconnected
    await livekit.open()  # the line is free again


async def test_a_clinician_is_removed_from_the_room_through_the_servers_api(unused_tcp_port: int) -> None:
    """``RoomAdmin.remove`` against a local fake of the LiveKit server's room API (Twirp)."""
    seen: list[tuple[api.access_token.Claims, api.RoomParticipantIdentity]] = []

    async def remove(request: web.Request) -> web.Response:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        seen.append((claims_of(token), api.RoomParticipantIdentity.FromString(await request.read())))
        reply = api.RemoveParticipantResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/protobuf")

    app = web.Application()
    app.router.add_post("/twirp/livekit.RoomService/RemoveParticipant", remove)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        config = {**livekit_config(), "url": f"http://127.0.0.1:{unused_tcp_port}"}
        await RoomAdmin(LiveKitSettings.model_validate(config)).remove("session-1", "clinician-ab")
    finally:
        await runner.cleanup()
    [(claims, asked)] = seen
    assert asked.room == "session-1" and asked.identity == "clinician-ab"
    assert claims.video.room_admin and claims.video.room == "session-1"  # that room only
