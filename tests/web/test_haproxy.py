"""Two replicas behind Debian's HAProxy running configs/haproxy/haproxy.cfg (its addresses only
rewritten, ``tools/haproxy_loopback.py``): new offers go where lines are free, and everything
about a session reaches the replica that holds it.

The replicas are the product as ``python -m web`` builds it (``create_app`` around
``build_product``, served by uvicorn on 127.0.0.1, each with its capacity agent on its own port),
with two shortcuts that change nothing HAProxy sees: no warm-up (first-use costs of models no
session here uses), and sessions whose pipeline is a pass-through instead of the models (the
session lifetime tests' ``LightHost``). A line is taken the way a phone call takes one
(``SessionHost.reserve_line``). Which replica a request reached is read at the replica's door
(an ASGI wrapper that writes down each request's path), not from anything HAProxy says.

The agent protocol's replies are unit-tested first, then spoken over real TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiortc import RTCConfiguration, RTCPeerConnection

from tests.debian_tools import debian_tool
from tests.web.test_faults import server_settings
from tests.web.test_session_lifetime import LightHost, loopback_only  # noqa: F401 - a fixture
from tools.haproxy_loopback import HAProxy, Replica
from tools.webrtc_patient_client import free_port
from web.app import SESSION_ID_HEADER, create_app
from web.capacity_agent import CapacityAgent, Lines, agent_reply
from web.product import Product, build_product

# --- the agent protocol ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_use", "limit", "reply"),
    [
        (0, 4, "ready 100%\n"),  # all free: the full configured weight
        (1, 4, "ready 75%\n"),
        (3, 4, "ready 25%\n"),
        (4, 4, "drain\n"),  # full: no new offers, its sessions still reach it
        (5, 4, "drain\n"),  # a phone call over a lowered cap: still full, never a negative weight
        (0, 1, "ready 100%\n"),
        (299, 300, "ready 1%\n"),  # one line free out of many: still offered, if least
    ],
)
def test_the_agent_says_ready_with_the_free_fraction_or_drain_when_full(
    in_use: int, limit: int, reply: str
) -> None:
    assert agent_reply(Lines(in_use=in_use, limit=limit)) == reply


async def test_the_agent_answers_each_connection_with_the_current_count_and_closes() -> None:
    taken = [0]
    agent = CapacityAgent("127.0.0.1", 0, lambda: Lines(in_use=taken[0], limit=2))
    await agent.start()
    try:

        async def ask(send: bytes = b"") -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", agent.port)
            if send:  # HAProxy's agent-send, when configured: ignored
                writer.write(send)
            reply = await asyncio.wait_for(reader.read(), 5)  # read to the end: the agent closes
            writer.close()
            return reply

        assert await ask() == b"ready 100%\n"
        taken[0] = 2
        assert await ask(b"replicas/app-1\n") == b"drain\n"
        taken[0] = 1
        assert await ask() == b"ready 50%\n"  # "ready" undoes the drain
    finally:
        await agent.stop()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", agent.port)  # stopped: nothing listens


# --- two replicas behind HAProxy -----------------------------------------------------------------


class Door:
    """An ASGI wrapper that writes down every HTTP request's path and query: who got what."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode()
            self.seen.append(scope["path"] + (f"?{query}" if query else ""))
        await self.app(scope, receive, send)


@dataclass
class Running:
    name: str  # app-1 or app-2, as in haproxy.cfg
    product: Product
    door: Door
    server: uvicorn.Server
    task: asyncio.Task
    taken: list = field(default_factory=list)  # lines held as a phone call holds one

    def take_lines(self, count: int) -> None:
        self.taken += [self.product.host.reserve_line() for _ in range(count)]

    def free_lines(self) -> None:
        for line in self.taken:
            line.release()
        self.taken.clear()


async def start_replica(tmp_path: Path, name: str, max_concurrent: int) -> tuple[Running, Replica]:
    port, agent_port = free_port(), free_port()
    settings = server_settings(
        tmp_path / name,
        host="127.0.0.1",
        port=port,
        sessions={
            "max_concurrent": max_concurrent,
            "agent_check_port": agent_port,
            "offers_per_minute": 1000,
            "connect_deadline_s": 60,  # a session keeps its line for the whole test
        },
    )
    product = replace(build_product(settings, phone=False), host=LightHost(settings))
    door = Door(create_app(settings, product))
    server = uvicorn.Server(uvicorn.Config(door, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    for _ in range(300):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.1)
    assert server.started, f"replica {name} did not start"
    return Running(name, product, door, server, task), Replica(name, port, agent_port)


@pytest.fixture
async def replicas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Running, Running, HAProxy]]:
    """app-1 (one line) and app-2 (three lines) behind HAProxy, every server up."""
    binary = debian_tool("haproxy", "haproxy")

    async def no_warm_up(_self: Product) -> None:  # no model here is used: nothing to warm
        return None

    monkeypatch.setattr(Product, "warm_up", no_warm_up)
    a, replica_a = await start_replica(tmp_path, "app-1", 1)
    b, replica_b = await start_replica(tmp_path, "app-2", 3)
    haproxy = HAProxy(binary, tmp_path, free_port(), [replica_a, replica_b], free_port())
    haproxy.start()
    try:
        await haproxy.wait_for({"app-1": "UP", "app-2": "UP", "app-1-full": "UP", "app-2-full": "UP"})
        yield a, b, haproxy
    finally:
        haproxy.stop()
        for running in (a, b):
            running.free_lines()
            running.server.should_exit = True
        for running in (a, b):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running.task, 30)


async def browser_offer() -> str:
    """A browser's offer (aiortc: a microphone line, ICE and DTLS); the peer itself is closed."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


def offers(running: Running) -> int:
    return sum(path == "/api/offer" for path in running.door.seen)


async def test_new_offers_go_to_the_replica_with_free_lines(
    replicas: tuple[Running, Running, HAProxy],
) -> None:
    a, b, haproxy = replicas
    a.take_lines(1)  # app-1's only line: a phone call
    await haproxy.wait_for({"app-1": "DRAIN", "app-2": "UP"})  # app-1's agent said so
    sdp = await browser_offer()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{haproxy.port}", timeout=30) as patient:
        for _ in range(3):  # three new patients, each from their own browser (no cookie)
            patient.cookies.clear()
            answer = await patient.post("/api/offer", json={"sdp": sdp, "type": "offer"})
            assert answer.status_code == 200, answer.text  # not "all lines are busy"
            assert answer.headers[SESSION_ID_HEADER] == answer.json()["session_id"]
        assert (offers(a), offers(b)) == (0, 3)
        assert b.product.host.in_use() == 3

        # Now every line of both is taken: the patient still hears the app's own answer, with
        # the emergency number (HAProxy's backup servers), not a bare proxy error.
        await haproxy.wait_for({"app-1": "DRAIN", "app-2": "DRAIN"})
        patient.cookies.clear()
        busy = await patient.post("/api/offer", json={"sdp": sdp, "type": "offer"})
        assert busy.status_code == 503
        assert busy.json()["busy"] is True and busy.json()["emergency_number"]

        a.free_lines()  # the call ended: app-1 takes patients again
        await haproxy.wait_for({"app-1": "UP"})
        before = offers(a), offers(b)
        patient.cookies.clear()
        assert (await patient.post("/api/offer", json={"sdp": sdp, "type": "offer"})).status_code == 200
        assert (offers(a), offers(b)) == (before[0] + 1, before[1])


async def test_every_request_about_a_session_reaches_its_replica_without_its_cookie(
    replicas: tuple[Running, Running, HAProxy],
) -> None:
    a, b, haproxy = replicas
    b.take_lines(3)  # app-2 full: the patient's offer lands on app-1
    await haproxy.wait_for({"app-1": "UP", "app-2": "DRAIN"})
    base = f"http://127.0.0.1:{haproxy.port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as patient:
        answer = await patient.post("/api/offer", json={"sdp": await browser_offer(), "type": "offer"})
        assert answer.status_code == 200, answer.text
        session_id, token = answer.json()["session_id"], answer.json()["room_token"]
    assert offers(a) == 1
    b.free_lines()
    await haproxy.wait_for({"app-1": "DRAIN", "app-2": "UP"})  # app-1 is full with this session

    async with httpx.AsyncClient(base_url=base, timeout=30) as clinician:
        # The clinician's console comes from app-2 (app-1 takes nothing new), and with it the
        # SERVERID cookie that would keep this browser on app-2.
        assert (await clinician.get("/clinician")).status_code == 200
        assert "SERVERID" in clinician.cookies
        a.door.seen.clear()
        b.door.seen.clear()
        escalation = uuid.uuid4().hex[:16]
        for action in ("join", "summary", "hand-back", "end"):  # as clinician.js sends them
            await clinician.post(
                f"/clinician/api/escalations/{escalation}/{action}?session={session_id}", json={}
            )
        # The patient's room endpoints from a browser without any cookie (a reloaded page).
        async with httpx.AsyncClient(base_url=base, timeout=30) as page:
            for _ in range(3):
                await page.get(f"/api/room/{session_id}/status", headers={"X-Room-Token": token})
                page.cookies.clear()
            status = await page.get(f"/api/room/{session_id}/status", headers={"X-Room-Token": token})
        # The rest of the console goes anywhere: here, by its cookie, to app-2.
        assert (await clinician.get("/clinician/api/escalations")).status_code == 401  # not signed in

    at_a = [path.split("?")[0].rsplit("/", 1)[-1] for path in a.door.seen]
    assert at_a == ["join", "summary", "hand-back", "end", "status", "status", "status", "status"]
    assert b.door.seen == ["/clinician/api/escalations"]
    # Answered by the app itself (these sessions have no room: "This conversation has ended").
    assert status.status_code == 403 and "error" in status.json()
