"""Keypad digits: one per press from RFC 4733 events (which repeat), and from SIP INFO."""

from __future__ import annotations

import pytest

from media.sip.dtmf import DtmfDetector, TelephoneEvent, parse_event, parse_info_digit


def test_one_digit_per_press_despite_repeated_and_end_packets() -> None:
    detector = DtmfDetector()
    press = [TelephoneEvent("0", False, 10, d).to_bytes() for d in (160, 320, 480)]
    press += [TelephoneEvent("0", True, 10, 640).to_bytes()] * 3
    digits = [detector.feed(8000, payload) for payload in press]
    assert digits == ["0", None, None, None, None, None]
    second = [detector.feed(9600, TelephoneEvent("5", True, 10, 640).to_bytes()) for _ in range(3)]
    assert second == ["5", None, None]  # a press seen only by its end packets still counts


def test_events_that_are_not_digits_are_ignored() -> None:
    assert parse_event(bytes([32, 0x80, 0, 160])) is None  # 32: a modem tone, not a key
    assert parse_event(b"\x00") is None
    assert parse_event(TelephoneEvent("#", True, 0, 800).to_bytes()).digit == "#"


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        ("application/dtmf-relay", b"Signal=0\r\nDuration=160\r\n", "0"),
        ("application/dtmf-relay; charset=x", b"signal= *\nDuration=100", "*"),
        ("application/dtmf", b"7", "7"),
        ("application/dtmf-relay", b"Signal=Z\r\n", None),
        ("text/plain", b"Signal=1", None),
    ],
)
def test_sip_info_bodies(content_type: str, body: bytes, digit: str | None) -> None:
    assert parse_info_digit(content_type, body) == digit
