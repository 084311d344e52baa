"""The jitter buffer: order restored, loss concealed, wraparound, drift and outages survived."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from media.sip.jitter import JitterBuffer


def frame(value: int) -> np.ndarray:
    return np.full(160, value, dtype=np.int16)


def play(buffer: JitterBuffer, count: int) -> list[int]:
    return [int(buffer.pop()[0]) for _ in range(count)]


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, 0xFFFF), shuffle=st.randoms(use_true_random=False))
def test_reordering_within_the_depth_is_undone_across_wraparound(start: int, shuffle) -> None:
    depth, count = 3, 40
    buffer = JitterBuffer(depth=depth)
    order = list(range(count))
    for block in range(0, count, depth):  # packets arrive shuffled within each block of `depth`
        window = order[block : block + depth]
        shuffle.shuffle(window)
        order[block : block + depth] = window
    out: list[int] = []
    for index, n in enumerate(order):
        buffer.push((start + n) & 0xFFFF, frame(n + 1))
        if index >= depth:  # the clock starts once the buffer is primed
            out.append(int(buffer.pop()[0]))
    out += play(buffer, depth)
    assert out == list(range(1, count + 1))
    assert buffer.stats.concealed == 0


def test_a_lost_packet_is_concealed_by_repetition_then_silence() -> None:
    buffer = JitterBuffer(depth=2)
    out = []
    for n in range(9):  # one packet every 20 ms; numbers 2 and 3 never come
        if n not in (2, 3):
            buffer.push(100 + n, frame(1000 + n))
        if n >= 1:
            out += play(buffer, 1)
    out += play(buffer, 1)
    assert out[:2] == [1000, 1001]
    assert out[2] == 500  # the last frame again, at half level
    assert out[3] == 0  # then silence
    assert out[4:] == [1004, 1005, 1006, 1007, 1008]  # (the 0 before them: re-buffering)
    assert buffer.stats.concealed == 1


def test_late_and_duplicate_packets_are_dropped() -> None:
    buffer = JitterBuffer(depth=2)
    for n in (0, 1, 2):
        buffer.push(n, frame(n + 1))
    assert play(buffer, 2) == [1, 2]
    buffer.push(0, frame(99))  # too late: already played
    buffer.push(2, frame(98))  # duplicate
    assert play(buffer, 1) == [3]
    assert buffer.stats.late == 1 and buffer.stats.duplicate == 1


def test_a_sender_running_ahead_is_brought_back_to_the_fixed_delay() -> None:
    buffer = JitterBuffer(depth=3)
    for n in range(20):  # a burst: 20 packets at once
        buffer.push(n, frame(n + 1))
    first = int(buffer.pop()[0])
    assert first == 18  # 17 frames dropped: 3 frames (60 ms) of delay left
    assert buffer.stats.dropped == 17


def test_an_outage_rebuffers_and_a_sequence_jump_restarts() -> None:
    buffer = JitterBuffer(depth=2)
    buffer.push(10, frame(1))
    buffer.push(11, frame(2))
    assert play(buffer, 4) == [1, 2, 1, 0]  # the sender pauses (silence suppression): concealed
    buffer.push(12, frame(3))
    assert play(buffer, 1) == [0]  # re-buffering
    buffer.push(13, frame(4))
    assert play(buffer, 2) == [3, 4]
    buffer.push(9000, frame(66))  # one stray packet far away: ignored
    buffer.push(14, frame(5))
    buffer.push(15, frame(6))
    assert play(buffer, 2) == [5, 6]
    for n in range(4):  # a sender that restarted its numbering
        buffer.push(40000 + n, frame(7 + n))
    assert play(buffer, 2) == [9, 10]  # its first two packets were taken for strays


def test_before_anything_arrives_it_plays_silence() -> None:
    buffer = JitterBuffer()
    assert not buffer.pop().any()
    assert buffer.pop().size == 160
