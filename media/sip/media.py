"""One call's media: its RTP port pair, the caller's audio into a jitter buffer, digits, our audio out.

Symmetric RTP with latching: the media source is the address negotiated in the SDP or, for a
caller behind NAT, the FIRST address that sends valid RTP (v2, a negotiated payload type); its
SSRC is noted. A packet from the SDP address takes the latch once (that is the caller's own
word), after which it never moves again in the call, except by a new offer (re-INVITE, which is
authenticated signalling). Packets from any other address are dropped and counted in
``rejected``: they never reach the jitter buffer, never reset it and never change where our audio
goes. We send to the latched address, and to the SDP address until the first packet arrives. The
latched source's stream is re-buffered when its SSRC changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from media.sip.dtmf import DtmfDetector
from media.sip.g711 import Codec
from media.sip.jitter import JitterBuffer
from media.sip.ports import PortPool
from media.sip.rtp import SAMPLES_PER_PACKET, RtpError, RtpPacket, RtpSender
from media.sip.sdp import Negotiated

log = logging.getLogger(__name__)
JITTER_DEPTH_PACKETS = 3  # 60 ms of fixed delay


@dataclass
class MediaCounters:
    received: int = 0
    sent: int = 0
    rejected: int = 0
    digits: int = 0


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.media: CallMedia | None = None

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.media is not None:
            self.media.receive(data, addr)


class CallMedia:
    def __init__(
        self,
        pool: PortPool,
        port: int,
        rtp: asyncio.DatagramTransport,
        rtcp: asyncio.DatagramTransport,
        negotiated: Negotiated,
    ) -> None:
        self._pool = pool
        self.port = port
        self._rtp = rtp
        self._rtcp = rtcp
        self.negotiated = negotiated
        self.jitter = JitterBuffer(depth=JITTER_DEPTH_PACKETS, frame_samples=SAMPLES_PER_PACKET)
        self.sender = RtpSender(negotiated.codec.payload_type)
        self.counters = MediaCounters()
        self.last_received = time.monotonic()
        self.on_digit: Callable[[str], None] | None = None
        self.on_sent: list[Callable[[bytes, tuple[str, int]], None]] = []  # observers (tests, recording)
        self._dtmf = DtmfDetector()
        self._latched: tuple[str, int] | None = None
        self._latched_to_sdp = False  # the latch sits on the SDP address: final for this offer
        self._ssrc: int | None = None
        self.closed = False

    @classmethod
    async def open(cls, pool: PortPool, host: str, negotiated: Negotiated) -> CallMedia:
        protocol = _Protocol()
        port, rtp, rtcp = await pool.bind(host, lambda: protocol)
        media = cls(pool, port, rtp, rtcp, negotiated)
        protocol.media = media
        return media

    @property
    def codec(self) -> Codec:
        return self.negotiated.codec

    @property
    def target(self) -> tuple[str, int] | None:
        if self._latched is not None:
            return self._latched
        return self.negotiated.remote if self.negotiated.remote[1] else None

    def update(self, negotiated: Negotiated) -> None:
        """A new offer in the dialog (re-INVITE): new address, direction or codec."""
        if negotiated.codec is not self.negotiated.codec:
            self.jitter.reset()
            self.sender.payload_type = negotiated.codec.payload_type
        if negotiated.remote != self.negotiated.remote:
            self._latched = None
            self._latched_to_sdp = False
        self.negotiated = negotiated

    def receive(self, data: bytes, addr: tuple) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self.counters.rejected += 1
            return
        pt = packet.payload_type
        if pt not in (self.codec.payload_type, self.negotiated.dtmf_payload_type):
            self.counters.rejected += 1
            return
        source = (addr[0], addr[1])
        if not self._accept_source(source):
            self.counters.rejected += 1
            return
        self.last_received = time.monotonic()
        self.counters.received += 1
        if packet.ssrc != self._ssrc:
            self._ssrc = packet.ssrc
            self.jitter.reset()
        if pt == self.negotiated.dtmf_payload_type:
            digit = self._dtmf.feed(packet.timestamp, packet.payload)
            if digit is not None and self.on_digit is not None:
                self.counters.digits += 1
                self.on_digit(digit)
            return
        self.jitter.push(packet.sequence, self.codec.decode(packet.payload))

    @property
    def latched(self) -> tuple[str, int] | None:
        """The one address whose RTP is taken (None until the first valid packet)."""
        return self._latched

    def _accept_source(self, source: tuple[str, int]) -> bool:
        sdp = self.negotiated.remote
        from_sdp = bool(sdp[1]) and _same_address(source, sdp)
        if self._latched is None or (from_sdp and not self._latched_to_sdp):
            if self._latched is not None and self._latched != source:
                log.info("rtp: latched to the address the SDP names")
            self._latched = source
            self._latched_to_sdp = from_sdp
            return True
        return self._latched == source

    @property
    def held(self) -> bool:
        """The caller put us on hold (a=sendonly: music on hold may come; a=inactive)."""
        return self.negotiated.direction in ("sendonly", "inactive")

    def read_frame(self) -> np.ndarray:
        """The caller's next 20 ms at 8 kHz; silence unless the stream is two-way (no hold music)."""
        frame = self.jitter.pop()
        return frame if self.negotiated.direction == "sendrecv" else np.zeros_like(frame)

    def send_frame(self, samples: np.ndarray) -> None:
        """Send 20 ms of our audio (8 kHz int16) unless the caller does not receive now."""
        target = self.target
        if self.closed or target is None or not self.negotiated.caller_receives:
            return
        packet = self.sender.packet(self.codec.encode(samples))
        self._rtp.sendto(packet, target)
        self.counters.sent += 1
        for observer in self.on_sent:
            observer(packet, target)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._rtp.close()
        self._rtcp.close()
        self._pool.release(self.port)


def _same_address(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Two (host, port) pairs are one address (an IPv4-mapped IPv6 address is its IPv4 one)."""
    host = lambda h: h[7:] if h.lower().startswith("::ffff:") else h  # noqa: E731
    return a[1] == b[1] and host(a[0]).lower() == host(b[0]).lower()
