"""Malformed and hostile input: the parsers fail cleanly, the server answers with an error or
drops, and it keeps answering OPTIONS. Traffic goes to 127.0.0.1 only, in bounded batches."""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.sip.message import MAX_BODY_BYTES, SipParseError, StreamFramer, parse_message
from media.sip.rtp import RtpError, RtpPacket
from media.sip.sdp import SdpError, negotiate, parse_sdp
from media.sip.server import SipServer
from tests.media.sip.conftest import EchoHost, sip_settings
from tests.media.sip.probe import UdpProbe, offer, request, tcp_exchange

VALID = request("INVITE", port=5070, call_id="fuzz@127.0.0.1", body=offer(40000))


def mutations() -> st.SearchStrategy[bytes]:
    """Damaged versions of a valid INVITE, and plain junk."""
    cut = st.integers(0, len(VALID)).map(lambda n: VALID[:n])
    flip = st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)).map(
        lambda p: VALID[: p[0]] + bytes([p[1]]) + VALID[p[0] + 1 :]
    )
    insert = st.tuples(st.integers(0, len(VALID)), st.binary(max_size=64)).map(
        lambda p: VALID[: p[0]] + p[1] + VALID[p[0] :]
    )
    length = st.integers(-5, 10**12).map(
        lambda n: re.sub(rb"Content-Length: \d+", f"Content-Length: {n}".encode(), VALID)
    )
    return st.one_of(st.binary(max_size=2048), cut, flip, insert, length)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutations())
def test_the_message_parser_never_fails_uncleanly(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as error:
        assert error.status in (400, 413, 505, 513)
        return
    message.to_bytes()  # whatever parses can be written back


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.one_of(st.binary(max_size=512), st.just(VALID)), max_size=8))
def test_the_stream_framer_never_fails_uncleanly(chunks: list[bytes]) -> None:
    framer = StreamFramer()
    try:
        for chunk in chunks:
            for message in framer.feed(chunk):
                assert len(message) <= 65535
    except SipParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=500), st.text(max_size=40).map(lambda t: offer(1).decode() + t)))
def test_the_sdp_parser_never_fails_uncleanly(text: str) -> None:
    try:
        negotiate(parse_sdp(text))
    except SdpError:
        pass


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=1600))
def test_the_rtp_parser_never_fails_uncleanly(data: bytes) -> None:
    try:
        RtpPacket.parse(data)
    except RtpError:
        pass


# --- against a running server --------------------------------------------------------------------

HOSTILE = {
    "truncated headers": VALID[: VALID.index(b"Call-ID")],
    "truncated mid-line": VALID[: VALID.index(b"CSeq") + 3],
    "huge body": request("INVITE", port=5070, body=b"v=0\r\n" + b"a=x\r\n" * 12000),
    "body larger than announced": VALID.replace(b"Content-Length: ", b"Content-Length: 9", 1),
    "content-length not a number": VALID.replace(b"Content-Length: ", b"Content-Length: ten", 1),
    "negative content-length": VALID.replace(b"Content-Length: ", b"Content-Length: -", 1),
    "unknown method": request("EXPLODE", port=5070),
    "lower-case method": request("invite", port=5070),
    "binary junk": secrets.token_bytes(1200),
    "nul bytes in a header": VALID.replace(b"Jane Doe", b"Jane\x00\x00Doe"),
    "ten thousand headers": VALID.replace(b"Max-Forwards: 70\r\n", b"X: y\r\n" * 10000),
    "one very long header": VALID.replace(b"Max-Forwards: 70\r\n", b"X: " + b"y" * 60000 + b"\r\n"),
    "no via": VALID.replace(b"Via:", b"Vix:"),
    "garbage via": VALID.replace(b"SIP/2.0/UDP 127.0.0.1", b"HTTP/1.1 ???"),
    "bad from": VALID.replace(b'"Jane Doe" <sip:', b'"Jane Doe <sip:'),
    "cseq mismatch": VALID.replace(b"CSeq: 1 INVITE", b"CSeq: 1 OPTIONS"),
    "version 3": VALID.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1),
    "sdp nonsense": request("INVITE", port=5070, body=b"v=0\r\nm=audio banana RTP/AVP 0\r\n"),
    "sdp without a codec we know": request("INVITE", port=5070, body=offer(40000, "96")),
    "a response to nobody": b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    "an ACK for nothing": request("ACK", port=5070, to_tag="ghost"),
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "tls hello": bytes.fromhex("160301020001000001fc0303") + secrets.token_bytes(64),
    "only line breaks": b"\r\n" * 500,
}
ACCEPTABLE = {400, 403, 413, 415, 481, 488, 501, 505, 513}


class ServerThread:
    """A SipServer with an echo session on its own event loop, for synchronous fuzzing."""

    def __init__(self, tmp_path: Path) -> None:
        self.settings = sip_settings(tmp_path, max_calls=2)
        self.loop = asyncio.new_event_loop()
        self.server: SipServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.server = SipServer(self.settings, EchoHost(self.settings))
            await self.server.start()
            self._ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def stop(self) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    thread = ServerThread(tmp_path_factory.mktemp("hostile"))
    yield thread
    thread.stop()


def exchange(port: int, data: bytes, wait_s: float = 0.15, until_status: int | None = None) -> list[bytes]:
    """Send one datagram; collect replies for ``wait_s`` (or until one has ``until_status``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.sendto(data[:65000], ("127.0.0.1", port))
        replies: list[bytes] = []
        deadline = time.monotonic() + wait_s
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            try:
                replies.append(sock.recv(65535))
            except TimeoutError:
                break
            if until_status is not None and parse_message(replies[-1]).status == until_status:
                break
        return replies


def answers_options(port: int) -> bool:
    replies = exchange(port, request("OPTIONS", port=5070), wait_s=2.0, until_status=200)
    return any(parse_message(r).status == 200 for r in replies)


def test_each_hostile_message_is_refused_or_dropped(running: ServerThread) -> None:
    assert running.server is not None
    port = running.server.port
    for name, data in HOSTILE.items():
        statuses = [parse_message(reply).status for reply in exchange(port, data)]
        assert all(status in ACCEPTABLE for status in statuses), (name, statuses)
    assert running.server.stats["errors"] == 0
    assert running.server.active_calls == 0
    assert answers_options(port)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutations())
def test_fuzzed_datagrams_never_silence_the_server(running: ServerThread, data: bytes) -> None:
    assert running.server is not None
    for reply in exchange(running.server.port, data, wait_s=0.03):
        parse_message(reply)  # whatever the server says is well-formed SIP
    assert running.server.stats["errors"] == 0
    assert answers_options(running.server.port)


async def test_hostile_tcp_streams_are_cut_off_and_tcp_keeps_working(tmp_path: Path) -> None:
    settings_ = sip_settings(tmp_path)
    server = SipServer(settings_, EchoHost(settings_))
    await server.start()
    try:
        assert await tcp_exchange(server.port, b"X" * 70000, within=1.0) == []  # unframeable: closed
        no_length = request("OPTIONS", port=5070).replace(b"Content-Length: 0\r\n", b"")
        assert await tcp_exchange(server.port, no_length, within=1.0) == []
        too_long = f"Content-Length: {MAX_BODY_BYTES + 1}".encode()
        huge = request("OPTIONS", port=5070).replace(b"Content-Length: 0", too_long)
        assert await tcp_exchange(server.port, huge, within=1.0) == []
        replies = await tcp_exchange(server.port, request("OPTIONS", port=5070, transport="TCP"), within=1.0)
        assert [r.status for r in replies] == [200]
        probe = await UdpProbe.open()
        probe.send(request("OPTIONS", port=probe.port), server.port)
        assert await probe.wait(lambda m: m.status == 200, 2)
        probe.close()
        assert server.stats["tcp_unframeable"] == 3 and server.stats["errors"] == 0
    finally:
        await server.stop()
