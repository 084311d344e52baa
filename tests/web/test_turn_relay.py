"""TURN through the app: the page asks ``/api/ice-servers`` before its offer, and a browser that
may only use the relay (``iceTransportPolicy: "relay"``) connects through a real coturn.

The "browser" is aiortc configured exactly as the page configures its ``RTCPeerConnection``
from the endpoint's JSON; headless Chromium on the real page through coturn is
``tests/web/test_turn_browser.py``.
Everything is on 127.0.0.1; the sessions carry a pass-through pipeline instead of the models.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import aioice.ice
import httpx
import pytest
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from pipecat.frames.frames import Frame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_transport import BaseTransport

from configs.settings import Settings
from media.host import LiveSession, SessionHost
from pipeline.session import SessionContext
from tests.web.turn_server import Coturn, coturn
from web.app import create_app
from web.product import build_product

BASE = "http://127.0.0.1"
CONNECT_S = 15.0


class PassThrough(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class LightHost(SessionHost):
    """The real session host whose sessions carry no models."""

    async def start(self, transport: BaseTransport, **kwargs: Any) -> LiveSession:  # type: ignore[override]
        return await super().start(transport, **kwargs)

    def session_processors(self, context: SessionContext) -> list[FrameProcessor]:
        return [PassThrough()]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """aioice offers the machine's own addresses; these tests stay on 127.0.0.1."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    with coturn(tmp_path_factory.mktemp("coturn")) as server:
        yield server


def with_turn(settings: Settings, relay: Coturn, **more: Any) -> Settings:
    turn = settings.turn.model_validate({"urls": [relay.url], "shared_secret": relay.secret, **more})
    return settings.model_copy(update={"turn": turn})


async def until(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


def candidate_types(sdp: str) -> set[str]:
    return {line.split(" typ ")[1].split()[0] for line in sdp.splitlines() if line.startswith("a=candidate:")}


# --- the endpoint -------------------------------------------------------------------------


async def get(settings: Settings, *paths: str) -> list[httpx.Response]:
    """GET each path from the app (no lifespan: nothing to warm up for these requests)."""
    product = build_product(settings, phone=False)
    app = create_app(settings, product)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            return [await client.get(path) for path in paths]
    finally:
        await product.queue.close()


async def test_without_turn_the_page_gets_no_ice_servers_as_before(settings: Settings) -> None:
    response, page = await get(settings, "/api/ice-servers", "/static/app.js")
    script = page.text
    assert response.status_code == 200
    assert response.json() == {"iceServers": [], "iceTransportPolicy": "all"}
    assert response.headers["cache-control"] == "no-store"
    assert "/api/ice-servers" in script  # the page asks before it creates its peer connection


async def test_with_turn_the_page_gets_fresh_credentials_and_the_relay_policy(settings: Settings) -> None:
    relayed = with_turn(settings, Coturn(port=3478, secret="north"), relay_only=True, ttl_s=600)
    first, second = (response.json() for response in await get(relayed, *["/api/ice-servers"] * 2))
    assert first["iceTransportPolicy"] == "relay"
    [server] = first["iceServers"]
    assert server["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
    expires_at = int(server["username"].split(":")[0])
    assert 590 <= expires_at - time.time() <= 610  # valid for TURN__TTL_S from now, no longer
    assert server["credential"] and server["credential"] != "north"  # the secret never leaves the server
    assert second["iceServers"][0]["username"] != server["username"]  # minted per request


async def test_the_ice_servers_are_rate_limited_like_offers(settings: Settings) -> None:
    limited = settings.model_copy(
        update={"sessions": settings.sessions.model_copy(update={"offers_per_minute": 2})}
    )
    statuses = [response.status_code for response in await get(limited, *["/api/ice-servers"] * 3)]
    assert statuses == [200, 200, 429]


# --- a relay-only browser through coturn --------------------------------------------------


async def test_a_relay_only_browser_connects_through_coturn(settings: Settings, relay: Coturn) -> None:
    relayed = with_turn(settings, relay, relay_only=True)
    host = LightHost(relayed)
    product = replace(build_product(relayed, phone=False), host=host)
    app = create_app(relayed, product)
    pc: RTCPeerConnection | None = None
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            config = (await client.get("/api/ice-servers")).json()
            # As the page does: new RTCPeerConnection({iceServers, iceTransportPolicy}).
            pc = RTCPeerConnection(
                RTCConfiguration(
                    iceServers=[RTCIceServer(**server) for server in config["iceServers"]],
                    iceTransportPolicy=RTCIceTransportPolicy(config["iceTransportPolicy"]),
                )
            )
            pc.addTransceiver("audio", direction="sendrecv")
            await pc.setLocalDescription(await pc.createOffer())
            offer = pc.localDescription.sdp
            response = await client.post("/api/offer", json={"sdp": offer, "type": "offer"})
            assert response.status_code == 200
            answer = response.json()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
            assert await until(lambda: pc is not None and pc.connectionState == "connected", CONNECT_S), (
                pc.connectionState
            )
            assert await until(lambda: answer["session_id"] in host.live, CONNECT_S)
            for live in list(host.live.values()):
                await live.cancel()
            assert await until(lambda: host.in_use() == 0, 10)
    finally:
        if pc is not None:
            await pc.close()
        await app.state.webrtc_sessions.close()
        await product.queue.close()
    assert candidate_types(offer) == {"relay"}  # the browser offered the relay and nothing else
    # The server's own peer connection was given the relay too (its credentials, per session).
    assert "relay" in candidate_types(answer["sdp"])
