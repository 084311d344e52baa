"""Voice-to-voice latency of phone calls, next to the browser path, on the same synthesised turns.

    python -m tools.bench --phone --turns 20 --json

A real caller (``media.sip.uac``) dials a ``SipServer`` in this process over loopback, sends
each patient turn as G.711 RTP in real time once the agent's previous reply has ended (silence
packets in between, as a phone does), and measures from the end of the patient's speech to the
first non-silent RTP packet of the agent's reply. The browser path is the existing benchmark
run (the file transport, same pipeline, same audio).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from configs.settings import Settings
from media.audio_files import resample_int16
from media.sip.server import SipServer
from media.sip.uac import Caller
from pipeline.session import INPUT_RATE
from tools.bench_paths import bench_setup, latency_summary, machine, run_one
from tools.replay import load_turns
from web.product import Product

REPLY_IDLE_S = 1.0  # the reply is over after this much silence (as the file transport waits)
REPLY_TIMEOUT_S = 25.0
PHONE_P95_EXTRA_MS_MAX = 150


class _Replies:
    """Follows the agent's RTP as it arrives: when it last made a sound."""

    def __init__(self, caller: Caller) -> None:
        self._caller = caller
        self._seen = 0
        self.last_sound = 0.0

    def update(self) -> None:
        received = self._caller.received
        codec = self._caller.codec
        for item in received[self._seen :]:
            if item.packet.payload_type == codec.payload_type and np.any(codec.decode(item.packet.payload)):
                self.last_sound = item.at
        self._seen = len(received)

    async def wait_for_reply(self, after: float) -> None:
        """Until the agent has spoken after ``after`` and then been silent for ``REPLY_IDLE_S``."""
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while time.monotonic() < deadline:
            self.update()
            if self.last_sound > after and time.monotonic() - self.last_sound >= REPLY_IDLE_S:
                return
            await asyncio.sleep(0.05)


def _phone_settings(settings: Settings) -> Settings:
    sip = settings.sip.model_copy(update={"host": "127.0.0.1", "port": 0, "transports": ["udp"]})
    return settings.model_copy(update={"sip": sip})


async def run_phone(product: Product, wavs: list[Path]) -> dict[str, Any]:
    """Place one call to the product's session host and play every turn; latencies in ms, like ``run_one``."""
    turns = load_turns(wavs)
    settings = _phone_settings(product.settings)
    server = SipServer(settings, product.host)
    await server.start()
    caller = Caller(("127.0.0.1", server.port))
    await caller.open()
    started = time.monotonic()
    latencies: list[float] = []
    try:
        await caller.invite()
        replies = _Replies(caller)
        await replies.wait_for_reply(after=0.0)  # the greeting
        for turn in turns:
            clip = caller.play(resample_int16(turn.samples, INPUT_RATE, 8000))
            await asyncio.wait_for(clip.done.wait(), turn.samples.size / INPUT_RATE + 10)
            speech_end = clip.started + turn.speech_end_s
            await replies.wait_for_reply(after=clip.finished)
            first = caller.first_sound_after(speech_end)
            if first is not None:
                latencies.append(round(float(first - speech_end) * 1000, 1))
        await caller.bye()
    finally:
        await caller.close()
        await server.stop()
    return latency_summary(len(turns), latencies, started)


async def compare(turns: int) -> dict[str, Any]:
    """The browser path and the phone path on the same synthesised turns."""
    async with bench_setup(turns) as (product, wavs):
        browser = await run_one("pipeline", product, wavs)
        phone = await run_phone(product, wavs)
    extra = (
        round(phone["p95_ms"] - browser["p95_ms"], 1)
        if phone["p95_ms"] is not None and browser["p95_ms"] is not None
        else None
    )
    paired = None  # turn by turn, when every turn got a reply on both paths
    if browser["replies"] == phone["replies"] == turns:
        differences = [p - b for p, b in zip(phone["latency_ms"], browser["latency_ms"], strict=True)]
        paired = round(float(statistics.median(differences)), 1)
    return {
        "machine": machine(),
        "turns": turns,
        "browser": browser,
        "phone": phone,
        "phone_p95_extra_ms": extra,
        "phone_extra_ms_median_paired": paired,
        "targets": {"phone_p95_extra_ms_max": PHONE_P95_EXTRA_MS_MAX},
    }


def print_comparison(report: dict[str, Any]) -> None:
    for name in ("browser", "phone"):
        r = report[name]
        print(
            f"{name:8s} p50={r['p50_ms']} ms  p95={r['p95_ms']} ms  max={r['max_ms']} ms  "
            f"({r['replies']}/{r['turns']} replies)"
        )
    print(
        f"phone adds {report['phone_p95_extra_ms']} ms at p95 "
        f"(target <= {report['targets']['phone_p95_extra_ms_max']} ms); "
        f"median of the per-turn differences: {report['phone_extra_ms_median_paired']} ms"
    )
