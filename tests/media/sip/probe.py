"""A raw SIP peer for tests: send exactly these bytes, collect what comes back (UDP or TCP)."""

from __future__ import annotations

import asyncio
import secrets
import time

from media.sip.message import SipMessage, SipParseError, parse_message


class UdpProbe(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.messages: list[tuple[float, SipMessage]] = []
        self.raw: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    @classmethod
    async def open(cls) -> UdpProbe:
        probe = cls()
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: probe, local_addr=("127.0.0.1", 0))
        return probe

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.raw.append(data)
        try:
            self.messages.append((time.monotonic(), parse_message(data)))
        except SipParseError:
            pass

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))

    async def wait(self, predicate, within: float = 3.0) -> SipMessage | None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for _, message in self.messages:
                if predicate(message):
                    return message
            await asyncio.sleep(0.01)
        return None

    def statuses(self, method: str | None = None) -> list[int]:
        return [
            int(m.status or 0)
            for _, m in self.messages
            if not m.is_request and (method is None or m.cseq[1] == method)
        ]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def request(
    method: str,
    *,
    port: int,
    call_id: str | None = None,
    cseq: int = 1,
    branch: str | None = None,
    to_tag: str = "",
    body: bytes = b"",
    content_type: str = "application/sdp",
    extra: str = "",
    transport: str = "UDP",
    uri: str = "sip:agent@127.0.0.1",
) -> bytes:
    """One request as bytes (From is a made-up caller whose identity must never reach the logs)."""
    branch = branch or "z9hG4bK" + secrets.token_hex(6)
    call_id = call_id or secrets.token_hex(8) + "@127.0.0.1"
    to = f"<sip:agent@127.0.0.1>{';tag=' + to_tag if to_tag else ''}"
    head = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Jane Doe" <sip:+15551234567@127.0.0.1>;tag=caller1\r\n'
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: <sip:+15551234567@127.0.0.1:{port}>\r\n"
        f"{extra}"
    )
    if body:
        head += f"Content-Type: {content_type}\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def offer(port: int, codecs: str = "0 101", direction: str = "sendrecv") -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {codecs}\r\na=rtpmap:0 PCMU/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    ).encode()


async def tcp_exchange(port: int, data: bytes, within: float = 2.0) -> list[SipMessage]:
    """Send over a fresh TCP connection; the messages received within ``within`` seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    received = b""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
    finally:
        writer.close()
    messages = []
    for part in received.split(b"SIP/2.0 ")[1:]:
        try:
            messages.append(parse_message(b"SIP/2.0 " + part))
        except SipParseError:
            pass
    return messages
