"""A browser session's life against real WebRTC peers (aiortc, loopback only): a patient who
leaves while the models load, an offer whose ICE never connects, a server shut-down with such a
connection open, and a ``pc_id`` that renegotiates only for the holder of its room token.

The sessions here are the real host and transport with a pass-through pipeline instead of the
models (fast, and as slow to start as a test needs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import aioice.ice
import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from pipecat.frames.frames import Frame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_transport import BaseTransport

from configs.settings import Settings
from media.host import LinesBusy, LiveSession, SessionHost
from pipeline.session import SessionContext
from web.app import create_app
from web.auth import Auth
from web.product import build_product
from web.webrtc_sessions import WebRTCSessions

BASE = "http://127.0.0.1"


class PassThrough(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class LightHost(SessionHost):
    """The real session host whose sessions carry no models; loading them takes ``load_s``."""

    def __init__(self, settings: Settings, load_s: float = 0.0) -> None:
        super().__init__(settings)
        self.load_s = load_s
        self.started: list[str] = []

    async def start(self, transport: BaseTransport, **kwargs: Any) -> LiveSession:  # type: ignore[override]
        live = await super().start(transport, **kwargs)
        self.started.append(live.session_id)
        return live

    def session_processors(self, context: SessionContext) -> list[FrameProcessor]:
        time.sleep(self.load_s)  # off the event loop, as the models load
        return [PassThrough()]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """aioice offers the machine's own addresses; these tests stay on 127.0.0.1."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


@pytest.fixture
async def browser() -> AsyncIterator[Callable[[], RTCPeerConnection]]:
    """The patient's browser: a peer connection with a microphone line, closed after the test."""
    peers: list[RTCPeerConnection] = []

    def make() -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio", direction="sendrecv")
        peers.append(pc)
        return pc

    yield make
    for pc in peers:
        await pc.close()


async def offer_of(pc: RTCPeerConnection) -> dict[str, str]:
    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers its candidates here
    return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}


async def answer_offer(sessions: WebRTCSessions, pc: RTCPeerConnection) -> dict:
    offer = await offer_of(pc)
    return await sessions.answer(offer["sdp"], offer["type"])


async def until(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


def app_sessions_open(host: SessionHost) -> bool:
    return any(not (live.task is None or live.task.done()) for live in host.live.values())


async def connected(pc: RTCPeerConnection, answer: dict) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    assert await until(lambda: pc.connectionState == "connected", 10), pc.connectionState


# --- leaving early ------------------------------------------------------------------------


async def test_a_patient_who_leaves_while_the_models_load_ends_the_session_when_it_starts(
    settings: Settings, browser: Callable[[], RTCPeerConnection]
) -> None:
    host = LightHost(settings, load_s=1.5)
    sessions = WebRTCSessions(host)
    pc = browser()
    answer = await answer_offer(sessions, pc)
    try:
        await connected(pc, answer)
        await pc.close()  # gone before the session has started
        assert answer["session_id"] not in host.live and host.in_use() == 1  # still loading
        ended = await until(lambda: host.started and answer["session_id"] not in host.live, 1.5 + 5)
        assert host.started == [answer["session_id"]]
        assert ended, "the session runs on (until the idle timeout) for a patient who left"
        assert host.in_use() == 0 and len(sessions) == 0  # the line is free, the pc_id forgotten
    finally:
        await asyncio.wait_for(sessions.close(timeout_s=5), 10)


# --- ICE that never connects --------------------------------------------------------------


async def test_an_offer_whose_ice_never_connects_frees_its_line_and_closes_its_connection(
    settings: Settings, browser: Callable[[], RTCPeerConnection]
) -> None:
    host = LightHost(settings)
    sessions = WebRTCSessions(host, max_concurrent=1, connect_deadline_s=1.5)
    pc = browser()
    offer = await offer_of(pc)
    await pc.close()  # the browser goes away right after its offer: its candidates never answer
    answer = await sessions.answer(offer["sdp"], offer["type"])
    connection = sessions._sessions[answer["pc_id"]].connection
    try:
        assert host.in_use() == 1
        with pytest.raises(LinesBusy):  # the only line is held meanwhile
            await answer_offer(sessions, browser())
        freed = await until(lambda: host.in_use() == 0, 6)
        assert freed, "a connection that never connects keeps its line"
        assert await until(lambda: answer["session_id"] not in host.live and len(sessions) == 0, 2)
        assert connection.pc.connectionState == "closed"
        # The line is a line again: the next patient is admitted.
        next_answer = await answer_offer(sessions, browser())
        assert next_answer["session_id"] != answer["session_id"]
    finally:
        await asyncio.wait_for(sessions.close(timeout_s=5), 10)


async def test_shutting_down_with_a_connection_that_never_connects_is_bounded(
    settings: Settings, browser: Callable[[], RTCPeerConnection]
) -> None:
    host = LightHost(settings)
    sessions = WebRTCSessions(host)  # the default deadline: still waiting when the server stops
    pc = browser()
    offer = await offer_of(pc)
    await pc.close()
    answer = await sessions.answer(offer["sdp"], offer["type"])
    assert await until(lambda: answer["session_id"] in host.live, 5)
    began = time.monotonic()
    await asyncio.wait_for(sessions.close(timeout_s=3), 15)
    assert time.monotonic() - began < 6
    assert host.in_use() == 0 and len(sessions) == 0


# --- pc_id bound to its room token --------------------------------------------------------


async def test_a_pc_id_renegotiates_only_with_its_room_token_and_is_forgotten_at_the_end(
    settings: Settings, browser: Callable[[], RTCPeerConnection]
) -> None:
    host = LightHost(settings)
    product = replace(build_product(settings, phone=False), host=host)
    app = create_app(settings, product)  # no lifespan: nothing to warm up for these sessions
    other_token = Auth(settings).issue_patient_token("another-patients-session")
    pc = browser()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        first = await client.post("/api/offer", json=await offer_of(pc))
        assert first.status_code == 200
        answer = first.json()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        again = {**(await offer_of(pc)), "pc_id": answer["pc_id"]}

        anonymous = await client.post("/api/offer", json=again)
        stranger = await client.post("/api/offer", json=again, headers={"X-Room-Token": other_token})
        owner = await client.post("/api/offer", json=again, headers={"X-Room-Token": answer["room_token"]})

        live = host.live[answer["session_id"]]
        await live.cancel()  # the session ends
        assert await until(lambda: answer["session_id"] not in host.live, 5)
        await asyncio.sleep(0.2)
        after = await client.post(
            "/api/offer",
            json={**(await offer_of(browser())), "pc_id": answer["pc_id"]},
            headers={"X-Room-Token": answer["room_token"]},
        )
        assert await until(lambda: host.in_use() == len(host.live) == 1, 10)  # the new one is live
        for session in list(host.live.values()):
            await session.cancel()
        assert await until(lambda: host.in_use() == 0 and not app_sessions_open(host), 10)
    await product.queue.close()

    assert anonymous.status_code == 403 and stranger.status_code == 403
    assert "room token" in anonymous.json()["error"]
    assert owner.status_code == 200 and owner.json()["session_id"] == answer["session_id"]
    # Forgotten with its session: the old pc_id opens nothing of it (a new session is started).
    assert after.status_code == 200 and after.json()["session_id"] != answer["session_id"]
