"""RTP packets (RFC 3550): parsing, building, and the sequence/timestamp state of one sender."""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

HEADER = struct.Struct("!BBHII")
MAX_PACKET_BYTES = 1500
PTIME_S = 0.02
SAMPLES_PER_PACKET = 160  # 20 ms at 8 kHz


class RtpError(ValueError):
    """Not an RTP packet we can use."""


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def to_bytes(self) -> bytes:
        """Version 2, no padding, no extension, no CSRCs."""
        first = 0x80
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        header = HEADER.pack(first, second, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc)
        return header + self.payload

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one datagram; raises ``RtpError`` for anything that is not valid RTP v2."""
        if len(data) < HEADER.size or len(data) > MAX_PACKET_BYTES:
            raise RtpError("bad length")
        first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
        if first >> 6 != 2:
            raise RtpError("not RTP version 2")
        offset = HEADER.size + 4 * (first & 0x0F)  # CSRCs
        if first & 0x10:  # header extension
            if len(data) < offset + 4:
                raise RtpError("truncated extension")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
        end = len(data)
        if first & 0x20:  # padding: the last byte counts the padding bytes
            end -= data[-1]
            if data[-1] == 0:
                raise RtpError("bad padding")
        if offset > end:
            raise RtpError("truncated packet")
        return cls(second & 0x7F, sequence, timestamp, ssrc, bytes(data[offset:end]), bool(second & 0x80))


class RtpSender:
    """Sequence numbers and timestamps of one outgoing stream, from random starting points."""

    def __init__(self, payload_type: int, ssrc: int | None = None) -> None:
        self.payload_type = payload_type
        self.ssrc = ssrc if ssrc is not None else secrets.randbits(32)
        self.sequence = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)
        self._first = True

    def packet(
        self, payload: bytes, samples: int = SAMPLES_PER_PACKET, payload_type: int | None = None
    ) -> bytes:
        """The next packet carrying ``payload`` (``samples`` long); advances the stream."""
        packet = RtpPacket(
            self.payload_type if payload_type is None else payload_type,
            self.sequence,
            self.timestamp,
            self.ssrc,
            payload,
            marker=self._first,
        )
        self._first = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        return packet.to_bytes()

    def event_packet(self, payload: bytes, timestamp: int, *, marker: bool, payload_type: int) -> bytes:
        """A telephone-event packet: its own timestamp (the event's start), the next sequence number."""
        packet = RtpPacket(payload_type, self.sequence, timestamp, self.ssrc, payload, marker)
        self.sequence = (self.sequence + 1) & 0xFFFF
        return packet.to_bytes()
