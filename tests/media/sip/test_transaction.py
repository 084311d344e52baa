"""RFC 3261 timers: retransmissions double from T1 up to T2, and stop after 64*T1 or on demand."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from media.sip.transaction import Retransmitter, Timers


async def test_retransmissions_double_up_to_t2_then_give_up() -> None:
    timers = Timers(t1=0.02, t2=0.08)
    sent: list[float] = []
    gave_up = asyncio.Event()
    start = time.monotonic()
    sender = Retransmitter(lambda: sent.append(time.monotonic() - start), timers, on_timeout=gave_up.set)
    sender.start()
    await asyncio.wait_for(gave_up.wait(), 5)
    gaps = np.diff(sent)
    assert np.allclose(gaps[:3], [0.02, 0.04, 0.08], atol=0.015)  # T1, 2*T1, 4*T1 = T2
    assert np.all(gaps[3:] < 0.08 + 0.02)  # then every T2
    assert abs(sent[-1] - 64 * 0.02) < 0.1 and time.monotonic() - start < 64 * 0.02 + 0.2


async def test_stopping_ends_the_retransmissions() -> None:
    sent: list[int] = []
    sender = Retransmitter(lambda: sent.append(1), Timers(t1=0.01, t2=0.04))
    sender.start()
    await asyncio.sleep(0.05)
    sender.stop()
    count = len(sent)
    await asyncio.sleep(0.1)
    assert len(sent) == count and 2 <= count <= 5


async def test_reliable_transports_send_once() -> None:
    sent: list[int] = []
    done = asyncio.Event()
    timers = Timers(t1=0.005, t2=0.02)
    sender = Retransmitter(lambda: sent.append(1), timers, on_timeout=done.set, repeat=False)
    sender.start()
    await asyncio.wait_for(done.wait(), 2)
    assert sent == [1]
