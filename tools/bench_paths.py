"""The paths the latency benchmarks measure, and how they report them.

The same synthesised patient turns (the offline Piper voice) are replayed in real time through
a session; latency is measured at the transport, from the end of the patient's speech to the
agent's first audio. ``run_one("pipeline", ...)`` is the product's own session, started by the
composition root's session host exactly as a browser session is; ``run_one("baseline", ...)`` is a
stock-pipecat session with the same brain and models (``tools/baseline.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from pipecat.frames.frames import EndFrame
from pipecat.observers.base_observer import BaseObserver

from agent.channel import Channel
from configs.settings import load_settings
from media.file_transport import FileReplayTransport, PatientTurnAudio, ReplayTimeline
from media.host import Transport
from media.synth import synthesize
from pipeline.observers import TranscriptObserver
from pipeline.result import build_result
from pipeline.session import INPUT_RATE, make_worker, run_worker
from tools.baseline import baseline_session
from tools.replay import OUTPUT_RATE, load_turns
from web.product import Product, build_product

PATIENT_LINES = [
    "I have a red itchy rash on my left forearm.",
    "It started about two weeks ago.",
    "It itches a lot, especially at night.",
    "No, it is not bleeding.",
    "It has spread a little since last week.",
    "I have not had a fever.",
    "My skin usually burns in the sun.",
    "I tried some moisturiser but it did not help.",
    "There is also a small dry patch on my elbow.",
    "I am thirty four years old.",
    "No new medicines recently.",
    "It gets worse after I shower.",
    "The patch is slightly raised and rough.",
    "Nobody else at home has it.",
    "I work as a gardener, so I touch a lot of plants.",
    "It does not hurt, it just itches.",
    "I have had eczema as a child.",
    "The colour is pink, not dark.",
    "I have not noticed any blisters.",
    "That is everything, thank you.",
]


@contextlib.asynccontextmanager
async def bench_setup(turns: int) -> AsyncIterator[tuple[Product, list[Path]]]:
    """The product, warmed as the server warms it, and ``turns`` synthesised patient turns."""
    product = build_product(load_settings(), phone=False)
    await product.warm_up()
    try:
        with tempfile.TemporaryDirectory() as folder:
            yield product, synthesize_turns(turns, Path(folder))
    finally:
        await product.stop()


def synthesize_turns(count: int, folder: Path) -> list[Path]:
    return [
        synthesize(PATIENT_LINES[index % len(PATIENT_LINES)], folder / f"turn{index:02d}.wav")
        for index in range(count)
    ]


async def run_one(name: str, product: Product, wavs: list[Path]) -> dict[str, Any]:
    """Replay ``wavs`` through the product's session (``pipeline``) or the stock one (``baseline``)."""
    turns = load_turns(wavs)
    transcript = TranscriptObserver()
    started = time.monotonic()
    timeline = await replay_session(name, product, turns, [transcript])
    result = build_result(name, timeline, transcript.events)
    return latency_summary(len(turns), result["latency_ms"], started)


async def replay_session(
    name: str,
    product: Product,
    turns: list[PatientTurnAudio],
    observers: list[BaseObserver],
    *,
    session_id: str | None = None,
) -> ReplayTimeline:
    """Play ``turns`` in real time through one session, ours (``pipeline``) or the stock one
    (``baseline``), until the patient has finished and been answered; returns what crossed the
    transport. ``observers`` watch the session's frames (the benchmarks read them afterwards)."""
    transport = FileReplayTransport(turns, input_rate=INPUT_RATE, output_rate=OUTPUT_RATE)
    session_id = session_id or (f"bench-{name}" if name == "pipeline" else name)
    if name == "pipeline":
        live = await product.host.start(
            transport,
            kind=Transport.REPLAY,
            channel=Channel.AUDIO,
            session_id=session_id,
            output_rate=OUTPUT_RATE,
            observers=observers,
            idle_timeout_s=None,
        )
        worker, finished = live.worker, live.wait()
    else:
        context = product.host.context(session_id, Channel.AUDIO)
        processors = baseline_session(product.settings, product.first_backend, context)
        worker = make_worker(transport, processors, observers, output_rate=OUTPUT_RATE, idle_timeout_s=None)
        finished = run_worker(worker)

    async def end_when_done() -> None:
        budget = sum(t.samples.size for t in turns) / INPUT_RATE + 25.0 * (len(turns) + 1)
        try:
            await asyncio.wait_for(transport.timeline.finished.wait(), timeout=budget)
        finally:
            await worker.queue_frame(EndFrame())

    ender = asyncio.create_task(end_when_done())
    await finished
    ender.cancel()
    return transport.timeline


def latency_summary(turns: int, latencies: list[float], started: float) -> dict[str, Any]:
    """p50 / p95 / max of one path's voice-to-voice latencies (ms), as the benchmarks print them."""
    return {
        "turns": turns,
        "replies": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p95_ms": round(float(np.percentile(latencies, 95)), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
        "wall_s": round(time.monotonic() - started, 1),
        "latency_ms": latencies,
    }


def machine() -> str:
    """The machine a benchmark ran on, as its report says it."""
    cores = len(os.sched_getaffinity(0))
    return f"{platform.machine()} {platform.processor() or ''} cores={cores}".strip()
