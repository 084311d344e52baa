"""RTP packets: round trips, the optional header parts, sequence and timestamp arithmetic."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.sip.rtp import RtpError, RtpPacket, RtpSender


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=300),
    marker=st.booleans(),
)
def test_round_trip(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool) -> None:
    packet = RtpPacket(pt, seq, ts, ssrc, payload, marker)
    assert RtpPacket.parse(packet.to_bytes()) == packet


def test_csrcs_extension_and_padding_are_skipped() -> None:
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0, 7, 160, 42)
    csrcs = struct.pack("!II", 1, 2)
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\x00" * 4
    packet = RtpPacket.parse(header + csrcs + extension + b"audio" + b"\x00\x00\x03")
    assert packet.payload == b"audio"
    assert packet.sequence == 7 and packet.ssrc == 42


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80" * 11,
        b"\x40" + b"\x00" * 20,
        struct.pack("!BBHII", 0x8F, 0, 1, 1, 1),
        b"\xa0" + b"\x00" * 12,
    ],
)
def test_junk_is_refused(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_sender_numbers_packets_20_ms_apart_and_wraps() -> None:
    sender = RtpSender(0, ssrc=1234)
    sender.sequence, sender.timestamp = 0xFFFF, 0xFFFFFF00
    first = RtpPacket.parse(sender.packet(b"\xff" * 160))
    second = RtpPacket.parse(sender.packet(b"\xff" * 160))
    assert first.marker and not second.marker
    assert (first.sequence, second.sequence) == (0xFFFF, 0)
    assert second.timestamp == (first.timestamp + 160) & 0xFFFFFFFF
    assert first.ssrc == second.ssrc == 1234


def test_each_stream_starts_somewhere_random() -> None:
    starts = {(s.ssrc, s.sequence, s.timestamp) for s in (RtpSender(0) for _ in range(20))}
    assert len(starts) == 20
