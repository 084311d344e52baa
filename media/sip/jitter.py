"""A fixed-delay jitter buffer: reorders by sequence number, conceals loss, survives wraparound.

The buffer starts playing once ``depth`` packets are held, then gives one 20 ms frame per
``pop()`` (the caller's clock). A missing packet is concealed by repeating the last frame at
half level once, then silence. Late and duplicate packets are dropped; if the sender runs
ahead of the clock (drift, a burst) the oldest frames are dropped to keep the delay fixed; an
empty buffer (a silence-suppressing sender, an outage) re-buffers ``depth`` packets; a
sequence jump (three packets in a row far from the stream) starts a new stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESTART_AFTER = 3  # packets in a row far from the stream: the sender restarted its numbering


@dataclass
class JitterStats:
    received: int = 0
    played: int = 0
    concealed: int = 0
    late: int = 0
    duplicate: int = 0
    dropped: int = 0  # thrown away to keep the delay fixed


class JitterBuffer:
    def __init__(self, depth: int = 3, frame_samples: int = 160, capacity: int = 50) -> None:
        if depth < 1 or capacity <= 2 * depth:
            raise ValueError("need depth >= 1 and capacity > 2 * depth")
        self.depth = depth
        self.frame_samples = frame_samples
        self.capacity = capacity
        self.stats = JitterStats()
        self._frames: dict[int, np.ndarray] = {}
        self._highest: int | None = None  # extended (unwrapped) sequence number
        self._next: int | None = None  # the next sequence number to play; lower ones are late
        self._playing = False  # False while (re-)buffering
        self._last: np.ndarray | None = None
        self._far = 0  # consecutive packets far from the stream
        self._silence = np.zeros(frame_samples, dtype=np.int16)

    def __len__(self) -> int:
        return len(self._frames)

    def _extend(self, sequence: int) -> int:
        if self._highest is None:
            return sequence + 0x10000
        candidate = (self._highest & ~0xFFFF) | (sequence & 0xFFFF)
        if candidate - self._highest > 0x8000:
            candidate -= 0x10000
        elif self._highest - candidate > 0x8000:
            candidate += 0x10000
        return candidate

    def reset(self) -> None:
        """Forget everything (a new stream: another SSRC, a re-INVITE)."""
        self._frames.clear()
        self._highest = self._next = None
        self._playing = False
        self._last = None

    def push(self, sequence: int, samples: np.ndarray) -> None:
        """Add one received frame (``frame_samples`` int16 samples) by its 16-bit sequence number."""
        extended = self._extend(sequence)
        self.stats.received += 1
        if self._highest is not None and abs(extended - self._highest) >= self.capacity:
            self._far += 1  # a stray packet, or a sender that restarted its numbering
            if self._far < RESTART_AFTER:
                self.stats.late += 1
                return
            self.reset()
            extended = self._extend(sequence)
        self._far = 0
        if self._next is not None and extended < self._next:
            self.stats.late += 1
            return
        if extended in self._frames:
            self.stats.duplicate += 1
            return
        if samples.size != self.frame_samples:
            samples = np.resize(samples, self.frame_samples) if samples.size else self._silence
        self._frames[extended] = samples
        self._highest = extended if self._highest is None else max(self._highest, extended)
        while len(self._frames) > self.capacity:
            del self._frames[min(self._frames)]
            self.stats.dropped += 1

    def pop(self) -> np.ndarray:
        """The next 20 ms frame to play (always ``frame_samples`` long)."""
        if not self._playing:
            if len(self._frames) < self.depth:
                return self._silence
            self._playing = True
            self._next = min(self._frames)
        assert self._highest is not None and self._next is not None
        ahead = self._highest - self._next + 1
        if ahead > 2 * self.depth:  # the sender is ahead of our clock: drop to the fixed delay
            target = self._highest - self.depth + 1
            for key in [k for k in self._frames if k < target]:
                del self._frames[key]
                self.stats.dropped += 1
            self._next = target
        frame = self._frames.pop(self._next, None)
        if frame is not None:
            self._next += 1
            self._last = frame
            self.stats.played += 1
            return frame
        self.stats.concealed += 1
        if self._frames:
            self._next += 1  # lost (or very late): skip it
        else:
            self._playing = False  # underrun: re-buffer; the missing packet may still come
        return self._conceal()

    def _conceal(self) -> np.ndarray:
        last, self._last = self._last, None
        if last is None:
            return self._silence
        return (last.astype(np.int32) // 2).astype(np.int16)
