"""SIP from hostile peers: media from strangers, guessable ports, floods that cost memory,
too many TCP connections, and a Call-ID reused to reach someone else's session.

Real sockets on 127.0.0.1, the real server with the cheap echo session; loops are bounded.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from media.sip.g711 import PCMU
from media.sip.ports import PortPool
from media.sip.rtp import RtpSender
from media.sip.server import SipServer
from media.sip.transaction import Timers
from media.sip.uac import Caller
from tests.media.sip.conftest import EchoHost, free_rtp_range, sip_settings, wait_for
from tests.media.sip.probe import UdpProbe, offer, request

FAST = Timers(t1=0.05, t2=0.4)


async def start_server(tmp_path: Path, timers: Timers = FAST, **sip) -> SipServer:
    settings = sip_settings(tmp_path, **sip)
    server = SipServer(settings, EchoHost(settings), timers=timers)
    await server.start()
    return server


def tone(hz: float, seconds: float, level: int = 8000) -> np.ndarray:
    return (np.sin(2 * np.pi * hz * np.arange(int(8000 * seconds)) / 8000) * level).astype(np.int16)


class Stranger(asyncio.DatagramProtocol):
    """Someone else on the network: sends RTP at a call's port, records what comes back."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.received.append(data)


# --- 1. symmetric RTP latching ------------------------------------------------------------------


async def test_rtp_from_a_stranger_is_dropped_and_never_takes_the_call(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    caller = Caller(("127.0.0.1", server.port))
    await caller.open()
    loop = asyncio.get_running_loop()
    stranger_transport, stranger = await loop.create_datagram_endpoint(Stranger, local_addr=("127.0.0.1", 0))
    try:
        await caller.invite()
        call = next(iter(server.calls.values()))
        assert await wait_for(lambda: call.media.latched is not None, 2)
        assert call.media.latched == ("127.0.0.1", caller.rtp_port)
        caller.sending = False  # the caller goes quiet: a stranger tries to take over
        await asyncio.sleep(0.7)
        echo = server.host.echoes[0]  # type: ignore[attr-defined]
        heard_before = len(echo.heard)
        buffered_before = call.media.jitter.stats.received
        sender = RtpSender(0)  # the negotiated payload type, its own SSRC
        audio = tone(1000, 1.0)
        tick = time.monotonic()
        for start in range(0, audio.size, 160):
            stranger_transport.sendto(sender.packet(PCMU.encode(audio[start : start + 160])),
                                      ("127.0.0.1", call.media.port))  # fmt: skip
            tick += 0.02
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        await asyncio.sleep(0.3)
        assert call.media.counters.rejected >= 45, "the stranger's packets are dropped and counted"
        assert call.media.latched == ("127.0.0.1", caller.rtp_port), "our audio still goes to the caller"
        assert stranger.received == [], "the stranger hears nothing of the call"
        heard = np.concatenate(echo.heard[heard_before:])
        assert not np.any(np.abs(heard) > 1500), "the agent never hears the stranger"
        assert call.media.jitter.stats.received == buffered_before, "nothing of it reaches the buffer"
        before = len(caller.received)
        await asyncio.sleep(0.3)
        assert len(caller.received) > before + 5, "the caller still hears the agent"
    finally:
        stranger_transport.close()
        await caller.close()
        await server.stop()


# --- 2. random RTP ports ------------------------------------------------------------------------


async def test_rtp_ports_are_drawn_at_random_and_never_shared() -> None:
    low, high = free_rtp_range()
    pool = PortPool(low, high)
    ports = []
    for _ in range(12):  # one call after another: the next port is not the last one plus two
        port, rtp, rtcp = await pool.bind("127.0.0.1", asyncio.DatagramProtocol)
        ports.append(port)
        rtp.close()
        rtcp.close()
        pool.release(port)
    steps = np.diff(ports)
    assert np.count_nonzero(steps == 2) <= 3 and len(set(ports)) >= 6, ports
    held = [await pool.bind("127.0.0.1", asyncio.DatagramProtocol) for _ in range(20)]
    try:
        assert len({port for port, _, _ in held}) == 20 == len(pool.in_use)  # never two on one port
    finally:
        for port, rtp, rtcp in held:
            rtp.close()
            rtcp.close()
            pool.release(port)


# --- 3. no state before authentication ----------------------------------------------------------


@pytest.mark.parametrize("digest", [True, False])
async def test_a_flood_of_unauthenticated_invites_leaves_nothing_behind(tmp_path: Path, digest: bool) -> None:
    credentials = {"digest_username": "trunk", "digest_password": "s3cret"} if digest else {}
    server = await start_server(tmp_path, timers=Timers(), allowed_peers=["10.0.0.0/8"], **credentials)
    probe = await UdpProbe.open()
    try:
        body = offer(probe.port)
        for _batch in range(80):  # 2,000 INVITEs, 25 at a time (loopback UDP drops bigger bursts)
            for _ in range(25):
                probe.send(request("INVITE", port=probe.port, body=body), server.port)
            await asyncio.sleep(0.01)
        expected = 401 if digest else 403
        assert await wait_for(lambda: probe.statuses("INVITE").count(expected) >= 1500, 10)
        assert server.stored_transactions == 0, "nothing remembered for a refused stranger"
        assert server.active_calls == 0 and not server.rtp_ports_in_use
        await asyncio.sleep(0.6)  # T1: a refusal is not retransmitted either
        assert probe.statuses("INVITE").count(expected) <= 2000
        probe.send(request("OPTIONS", port=probe.port), server.port)
        assert await probe.wait(lambda m: m.cseq[1] == "OPTIONS" and m.status == expected, 2)
    finally:
        probe.close()
        await server.stop()


async def test_an_authenticated_trunk_still_calls_after_a_flood(tmp_path: Path) -> None:
    server = await start_server(tmp_path, allowed_peers=[], digest_username="trunk", digest_password="s3cret")
    probe = await UdpProbe.open()
    trunk = Caller(("127.0.0.1", server.port), username="trunk", password="s3cret")
    await trunk.open()
    try:
        for _ in range(200):
            probe.send(request("INVITE", port=probe.port, body=offer(probe.port)), server.port)
            await asyncio.sleep(0.001)
        await wait_for(lambda: len(probe.statuses("INVITE")) >= 150, 5)  # our caller does not retransmit
        await trunk.invite()
        assert trunk.statuses == [401, 100, 180, 200] and server.active_calls == 1
        assert server.stored_transactions <= 2  # the trunk's INVITE (and nothing of the flood)
    finally:
        probe.close()
        await trunk.close()
        await server.stop()


# --- 5. TCP connection limits -------------------------------------------------------------------


async def _closed_at_once(port: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await asyncio.wait_for(reader.read(1), 1.0) == b""
    except TimeoutError:
        return False
    finally:
        writer.close()


async def test_tcp_from_outside_the_allow_list_takes_no_slot(tmp_path: Path) -> None:
    server = await start_server(tmp_path, allowed_peers=["10.0.0.0/8"], transports=["tcp"])
    try:
        assert await _closed_at_once(server.port), "a stranger's connection is closed at once"
        assert server.stats["tcp_forbidden"] == 1
    finally:
        await server.stop()


async def test_one_address_cannot_hold_every_tcp_slot(tmp_path: Path) -> None:
    server = await start_server(tmp_path, transports=["tcp"], tcp_connections_per_address=4)
    held = []
    try:
        for _ in range(4):
            held.append(await asyncio.open_connection("127.0.0.1", server.port))
        await asyncio.sleep(0.1)
        assert await _closed_at_once(server.port) and await _closed_at_once(server.port)
        reader, writer = held[0]
        writer.write(request("OPTIONS", port=5070, transport="TCP"))
        assert b"SIP/2.0 200" in await asyncio.wait_for(reader.read(65536), 2), "the first four still work"
        writer.close()
        await asyncio.sleep(0.2)
        fifth = await asyncio.open_connection("127.0.0.1", server.port)  # a slot freed is usable again
        held.append(fifth)
        fifth[1].write(request("OPTIONS", port=5070, transport="TCP"))
        assert b"SIP/2.0 200" in await asyncio.wait_for(fifth[0].read(65536), 2)
    finally:
        for _, writer in held:
            writer.close()
        await server.stop()


# --- 6. one session per dialog -------------------------------------------------------------------


async def test_a_reused_call_id_is_a_new_session_never_the_old_room(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    probe = await UdpProbe.open()
    call_id = "reused@127.0.0.1"
    try:
        first = request("INVITE", port=probe.port, call_id=call_id, body=offer(probe.port))
        probe.send(first, server.port)
        ok = await probe.wait(lambda m: m.status == 200 and m.cseq[1] == "INVITE", 3)
        assert ok is not None
        old = next(iter(server.calls.values()))
        old_session = old.tag
        assert server.transport_for(old_session) is not None
        # the same Call-ID from another dialog while the call is up: refused, not joined
        other = first.replace(b"tag=caller1", b"tag=caller2").replace(b"z9hG4bK", b"z9hG4bKx", 1)
        probe.send(other, server.port)
        assert await probe.wait(lambda m: m.status == 482, 2) is not None
        assert server.active_calls == 1 and len(server.host.runs) == 1  # type: ignore[attr-defined]
        local_tag = old.local_tag
        probe.send(request("BYE", port=probe.port, call_id=call_id, cseq=2, to_tag=local_tag), server.port)
        assert await wait_for(lambda: server.active_calls == 0, 5)
        # after it ended: a new INVITE with the same Call-ID (another dialog) is a new session
        again = other.replace(b"z9hG4bKx", b"z9hG4bKy", 1)
        probe.send(again, server.port)
        assert await wait_for(lambda: server.active_calls == 1, 3)
        new = next(iter(server.calls.values()))
        assert new.tag != old_session, "the new caller gets its own session and room"
        runs = server.host.runs  # type: ignore[attr-defined]
        assert [run["session_id"] for run in runs] == [old_session, new.tag]
        assert server.transport_for(old_session) is None
        probe.send(again, server.port)  # its retransmission still matches its transaction
        await asyncio.sleep(0.3)
        assert server.active_calls == 1 and len(runs) == 2
    finally:
        probe.close()
        await server.stop()
