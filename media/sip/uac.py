"""A small SIP caller over UDP, for tests and the phone benchmark (not for production calls).

It places one call (INVITE with a G.711 offer, digest auth if challenged, ACK), streams RTP
continuously in real time (queued audio, else silence; keypad digits as RFC 4733 events),
records every RTP packet it receives with its arrival time, answers the server's BYE, and can
hold, resume and hang up.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from media.sip.auth import ALGORITHMS, parse_digest
from media.sip.dtmf import TelephoneEvent
from media.sip.g711 import PCMU, Codec
from media.sip.headers import NameAddr, new_branch, new_call_id, new_tag
from media.sip.message import SipMessage, SipParseError, parse_message
from media.sip.rtp import PTIME_S, SAMPLES_PER_PACKET, RtpError, RtpPacket, RtpSender
from media.sip.sdp import build_offer, negotiate, parse_sdp

DTMF_PT = 101


class CallFailed(RuntimeError):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Clip:
    """Audio the caller played: when its first and last packet went out (monotonic seconds)."""

    samples: np.ndarray
    started: float = 0.0
    finished: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Received:
    at: float
    packet: RtpPacket


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, handler) -> None:
        self._handler = handler

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self._handler(data, addr)


class Caller:
    def __init__(
        self,
        server: tuple[str, int],
        *,
        host: str = "127.0.0.1",
        codec: Codec = PCMU,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.server = server
        self.host = host
        self.codec = codec
        self._credentials = (username, password) if username and password else None
        self.call_id = new_call_id(host)
        self.local_tag = new_tag()
        self.remote_tag: str | None = None
        self.route_set: list[str] = []  # from the 2xx's Record-Route, reversed (we are the UAC)
        self.remote_target: str | None = None  # the agent's Contact
        self.cseq = 0
        self.statuses: list[int] = []  # every response status to our INVITEs, in order
        self.received: list[Received] = []
        self.ended = asyncio.Event()
        self.bye_received = False
        self.remote_rtp: tuple[str, int] | None = None
        self.answer_sdp = ""
        self.sending = True
        self._sip: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self.sip_port = 0
        self.rtp_port = 0
        self._responses: asyncio.Queue[SipMessage] = asyncio.Queue()
        self._queue: deque[Clip] = deque()
        self._events: deque[str] = deque()
        self._sender = RtpSender(codec.payload_type)
        self._send_task: asyncio.Task | None = None
        self._acked = 0
        self._ack: bytes | None = None

    # --- sockets ---------------------------------------------------------------------------------

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._sip, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._on_sip), local_addr=(self.host, 0)
        )
        self._rtp, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._on_rtp), local_addr=(self.host, 0)
        )
        self.sip_port = self._sip.get_extra_info("sockname")[1]
        self.rtp_port = self._rtp.get_extra_info("sockname")[1]

    async def close(self) -> None:
        if self._send_task is not None:
            self._send_task.cancel()
        for transport in (self._sip, self._rtp):
            if transport is not None:
                transport.close()

    def _on_sip(self, data: bytes, addr: tuple) -> None:
        try:
            message = parse_message(data)
        except SipParseError:
            return
        if message.is_request:
            self._on_request(message)
        elif message.get("call-id") == self.call_id:
            number, method = message.cseq
            if message.status == 200 and method == "INVITE" and self._ack and number == self._acked:
                self._send(self._ack)  # a retransmitted 2xx: ACK again
                return
            self._responses.put_nowait(message)

    def _on_request(self, request: SipMessage) -> None:
        response = SipMessage(status=200, reason="OK")
        for name in ("via", "from", "to", "call-id", "cseq"):
            for value in request.get_all(name) if name == "via" else [request.get(name) or ""]:
                response.add(name, value)
        if request.method != "ACK":
            self._send(response.to_bytes())
        if request.method == "BYE" and request.get("call-id") == self.call_id:
            self.bye_received = True
            self.ended.set()

    def _on_rtp(self, data: bytes, addr: tuple) -> None:
        try:
            self.received.append(Received(time.monotonic(), RtpPacket.parse(data)))
        except RtpError:
            pass

    def _send(self, data: bytes) -> None:
        assert self._sip is not None
        self._sip.sendto(data, self.server)

    # --- signalling ------------------------------------------------------------------------------

    def _request(self, method: str, body: str = "", extra: list[tuple[str, str]] | None = None) -> SipMessage:
        if method not in ("ACK", "CANCEL"):
            self.cseq += 1
        server = f"[{self.server[0]}]" if ":" in self.server[0] else self.server[0]
        uri = f"sip:agent@{server}:{self.server[1]}"
        message = SipMessage(method=method, uri=self.remote_target if self.remote_tag else uri)
        host = f"[{self.host}]" if ":" in self.host else self.host
        message.add("via", f"SIP/2.0/UDP {host}:{self.sip_port};branch={new_branch()};rport")
        message.add("max-forwards", "70")
        message.add("from", f"<sip:caller@{host}>;tag={self.local_tag}")
        to_tag = f";tag={self.remote_tag}" if self.remote_tag else ""
        message.add("to", f"<{uri}>{to_tag}")
        message.add("call-id", self.call_id)
        message.add("cseq", f"{self.cseq} {method}")
        message.add("contact", f"<sip:caller@{host}:{self.sip_port}>")
        if self.remote_tag:
            for route in self.route_set:
                message.add("route", route)
        for name, value in extra or []:
            message.add(name, value)
        if body:
            message.add("content-type", "application/sdp")
            message.body = body.encode()
        return message

    def _offer(self, direction: str = "sendrecv") -> str:
        return build_offer(
            address=self.host, port=self.rtp_port, session_id=1, version=self.cseq + 1,
            direction=direction, codecs=(self.codec,), dtmf_payload_type=DTMF_PT,
        )  # fmt: skip

    async def _final(self, wait_s: float) -> SipMessage:
        deadline = time.monotonic() + wait_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CallFailed(None, "no final response")
            response = await asyncio.wait_for(self._responses.get(), remaining)
            if response.cseq[0] != self.cseq:
                continue
            self.statuses.append(int(response.status or 0))
            if int(response.status or 0) >= 200:
                return response

    async def invite(self, wait_s: float = 30.0, direction: str = "sendrecv") -> SipMessage:
        """Send an INVITE (the first, or a re-INVITE) and ACK its final response."""
        extra: list[tuple[str, str]] = []
        for _ in range(2):
            request = self._request("INVITE", self._offer(direction), extra)
            self._send(request.to_bytes())
            response = await self._final(wait_s)
            if response.status == 401 and self._credentials and not extra:
                self._ack_error(request, response)
                extra = [("authorization", self._authorization(request, response))]
                continue
            break
        if int(response.status or 0) >= 300:
            self._ack_error(request, response)
            raise CallFailed(response.status, f"call refused: {response.status}")
        if self.remote_tag is None:
            self.route_set = list(reversed(response.get_all("record-route")))
            contacts = response.get_all("contact")
            self.remote_target = NameAddr.parse(contacts[0]).uri if contacts else str(request.uri)
        self.remote_tag = NameAddr.parse(response.get("to") or "").tag
        self.answer_sdp = response.body.decode()
        negotiated = negotiate(parse_sdp(self.answer_sdp))
        self.remote_rtp = negotiated.remote
        self._acked = self.cseq
        self._ack = self._request("ACK").to_bytes()
        self._send(self._ack)
        if self._send_task is None:
            self._send_task = asyncio.get_running_loop().create_task(self._stream())
        return response

    def _ack_error(self, request: SipMessage, response: SipMessage) -> None:
        ack = SipMessage(method="ACK", uri=request.uri)
        ack.add("via", request.get("via") or "")
        for name in ("max-forwards", "from", "call-id"):
            ack.add(name, request.get(name) or "")
        ack.add("to", response.get("to") or "")
        ack.add("cseq", f"{request.cseq[0]} ACK")
        self._send(ack.to_bytes())

    def _authorization(self, request: SipMessage, response: SipMessage) -> str:
        assert self._credentials is not None
        username, password = self._credentials
        offered = [parse_digest(value) for value in response.get_all("www-authenticate")]
        by_algorithm = {fields.get("algorithm", "MD5").upper(): fields for fields in offered}
        algorithm = next(name for name in ALGORITHMS if name in by_algorithm)  # the strongest offered
        challenge = by_algorithm[algorithm]
        h = lambda text: ALGORITHMS[algorithm](text.encode()).hexdigest()  # noqa: E731
        realm, nonce, uri, cnonce = (
            challenge["realm"],
            challenge["nonce"],
            str(request.uri),
            secrets.token_hex(8),
        )
        ha1, ha2 = h(f"{username}:{realm}:{password}"), h(f"INVITE:{uri}")
        digest = h(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        return (
            f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{digest}", algorithm={algorithm}, qop=auth, nc=00000001, cnonce="{cnonce}"'
        )

    async def hold(self) -> str:
        """Put the agent on hold (a=sendonly); returns the direction the agent answered."""
        response = await self.invite(direction="sendonly")
        return _direction(response.body.decode())

    async def resume(self) -> str:
        response = await self.invite(direction="sendrecv")
        return _direction(response.body.decode())

    async def bye(self, wait_s: float = 10.0) -> int:
        self._send(self._request("BYE").to_bytes())
        response = await self._final(wait_s)
        self.sending = False
        self.ended.set()
        return int(response.status or 0)

    async def cancel_after_ringing(self, wait_s: float = 10.0) -> int:
        """INVITE, wait for 180, CANCEL: the INVITE's final status (487 expected)."""
        request = self._request("INVITE", self._offer())
        self._send(request.to_bytes())
        while True:
            response = await asyncio.wait_for(self._responses.get(), wait_s)
            self.statuses.append(int(response.status or 0))
            if response.status == 180:
                break
        cancel = SipMessage(method="CANCEL", uri=request.uri)
        for name in ("via", "max-forwards", "from", "to", "call-id"):
            cancel.add(name, request.get(name) or "")
        cancel.add("cseq", f"{request.cseq[0]} CANCEL")
        self._send(cancel.to_bytes())
        while True:
            response = await asyncio.wait_for(self._responses.get(), wait_s)
            self.statuses.append(int(response.status or 0))
            if response.cseq[1] == "INVITE" and int(response.status or 0) >= 200:
                self._ack_error(request, response)
                return int(response.status or 0)

    # --- media -----------------------------------------------------------------------------------

    def play(self, samples: np.ndarray) -> Clip:
        """Queue 8 kHz int16 audio; it goes out in real time after what is queued before it."""
        clip = Clip(samples)
        self._queue.append(clip)
        return clip

    def press(self, digit: str) -> None:
        self._events.append(digit)

    async def _stream(self) -> None:
        tick = time.monotonic()
        position = 0
        while True:
            if self.sending and self.remote_rtp is not None and self._rtp is not None:
                if self._events:
                    await self._send_event(self._events.popleft())
                    tick = time.monotonic()
                frame = np.zeros(SAMPLES_PER_PACKET, dtype=np.int16)
                if self._queue:
                    clip = self._queue[0]
                    if position == 0:
                        clip.started = time.monotonic()
                    piece = clip.samples[position : position + SAMPLES_PER_PACKET]
                    frame[: piece.size] = piece
                    position += SAMPLES_PER_PACKET
                    if position >= clip.samples.size:
                        clip.finished = time.monotonic()
                        clip.done.set()
                        self._queue.popleft()
                        position = 0
                self._rtp.sendto(self._sender.packet(self.codec.encode(frame)), self.remote_rtp)
            tick += PTIME_S
            await asyncio.sleep(max(0.0, tick - time.monotonic()))

    async def _send_event(self, digit: str) -> None:
        """RFC 4733: 100 ms of event packets (start with the marker bit), then the end thrice."""
        assert self._rtp is not None and self.remote_rtp is not None
        start = self._sender.timestamp
        for step in range(1, 6):
            event = TelephoneEvent(digit, False, 10, step * SAMPLES_PER_PACKET).to_bytes()
            packet = self._sender.event_packet(event, start, marker=step == 1, payload_type=DTMF_PT)
            self._rtp.sendto(packet, self.remote_rtp)
            await asyncio.sleep(PTIME_S)
        end = TelephoneEvent(digit, True, 10, 5 * SAMPLES_PER_PACKET).to_bytes()
        for _ in range(3):
            self._rtp.sendto(
                self._sender.event_packet(end, start, marker=False, payload_type=DTMF_PT), self.remote_rtp
            )
        self._sender.timestamp = (start + 6 * SAMPLES_PER_PACKET) & 0xFFFFFFFF

    def audio(self, since: float = 0.0) -> np.ndarray:
        """What the agent sent (received after ``since``), decoded to 8 kHz int16."""
        payloads = [
            r.packet
            for r in self.received
            if r.at >= since and r.packet.payload_type == self.codec.payload_type
        ]
        if not payloads:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([self.codec.decode(p.payload) for p in payloads])

    def first_sound_after(self, since: float, threshold: int = 0) -> float | None:
        """Arrival time of the first agent packet after ``since`` holding sound above ``threshold``."""
        for r in self.received:
            if r.at >= since and r.packet.payload_type == self.codec.payload_type:
                if np.max(np.abs(self.codec.decode(r.packet.payload).astype(np.int32))) > threshold:
                    return r.at
        return None


def _direction(sdp: str) -> str:
    for line in sdp.splitlines():
        if line.strip() in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            return line.strip()[2:]
    return "sendrecv"
