"""Keypad digits: RFC 4733 telephone-events in RTP, and SIP INFO (application/dtmf-relay)."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

EVENTS = "0123456789*#ABCD"
EVENT = struct.Struct("!BBH")


@dataclass(frozen=True)
class TelephoneEvent:
    digit: str
    end: bool
    volume: int
    duration: int  # in timestamp units (1/8000 s)

    def to_bytes(self) -> bytes:
        return EVENT.pack(
            EVENTS.index(self.digit), (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration & 0xFFFF
        )


def parse_event(payload: bytes) -> TelephoneEvent | None:
    """A DTMF event, or None (too short, or an event that is not a keypad digit)."""
    if len(payload) < EVENT.size:
        return None
    code, flags, duration = EVENT.unpack_from(payload)
    if code >= len(EVENTS):
        return None
    return TelephoneEvent(EVENTS[code], bool(flags & 0x80), flags & 0x3F, duration)


class DtmfDetector:
    """One digit per key press, from the event packets (which repeat; the end packet thrice).

    A press is identified by its RTP timestamp: the first packet seen with a new timestamp
    (start, update or a lone end packet) yields the digit; the others are ignored.
    """

    def __init__(self, memory: int = 16) -> None:
        self._seen: list[int] = []
        self._memory = memory

    def feed(self, timestamp: int, payload: bytes) -> str | None:
        event = parse_event(payload)
        if event is None or timestamp in self._seen:
            return None
        self._seen.append(timestamp)
        del self._seen[: -self._memory]
        return event.digit


_SIGNAL = re.compile(r"^\s*signal\s*=\s*(\S)", re.IGNORECASE | re.MULTILINE)


def parse_info_digit(content_type: str, body: bytes) -> str | None:
    """The digit of a SIP INFO body (``application/dtmf-relay`` or ``application/dtmf``)."""
    kind = content_type.split(";")[0].strip().lower()
    text = body[:256].decode("ascii", errors="replace")
    if kind == "application/dtmf-relay":
        match = _SIGNAL.search(text)
        digit = match.group(1).upper() if match else ""
    elif kind == "application/dtmf":
        digit = text.strip()[:1].upper()
    else:
        return None
    return digit if digit and digit in EVENTS else None
