"""Voice-to-voice latency benchmark: this pipeline against a stock-pipecat baseline, same audio.

    python -m tools.bench --turns 20 --json
    python -m tools.bench --phone --turns 20 --json   # browser path vs phone path (G.711, RTP)

Patient turns are synthesised once with the offline Piper voice and replayed in real time
through each pipeline (same brain, same models); latency is measured at the transport, from
the end of the patient's speech to the agent's first audio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pipecat.frames.frames import EndFrame

from agent.backends import create_backend
from agent.channel import Channel
from configs.logs import setup_logging
from configs.settings import Settings, hub_offline_environment, load_settings
from media.file_transport import FileReplayTransport
from media.synth import synthesize
from pipeline.observers import TranscriptObserver
from pipeline.result import build_result
from pipeline.session import INPUT_RATE, SessionContext, make_worker, patient_session, run_worker, warm_up
from tools.baseline import baseline_session
from tools.replay import OUTPUT_RATE, load_turns

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


def synthesize_turns(count: int, folder: Path) -> list[Path]:
    return [
        synthesize(PATIENT_LINES[index % len(PATIENT_LINES)], folder / f"turn{index:02d}.wav")
        for index in range(count)
    ]


async def run_one(name: str, settings: Settings, wavs: list[Path]) -> dict[str, Any]:
    turns = load_turns(wavs)
    backend = create_backend(settings)
    context = SessionContext(session_id=f"bench-{name}", channel=Channel.AUDIO)
    processors = (patient_session if name == "pipeline" else baseline_session)(settings, backend, context)
    transport = FileReplayTransport(turns, input_rate=INPUT_RATE, output_rate=OUTPUT_RATE)
    transcript = TranscriptObserver()
    worker = make_worker(transport, processors, [transcript], output_rate=OUTPUT_RATE, idle_timeout_s=None)

    async def end_when_done() -> None:
        budget = sum(t.samples.size for t in turns) / INPUT_RATE + 25.0 * (len(turns) + 1)
        try:
            await asyncio.wait_for(transport.timeline.finished.wait(), timeout=budget)
        finally:
            await worker.queue_frame(EndFrame())

    started = time.monotonic()
    ender = asyncio.create_task(end_when_done())
    await run_worker(worker)
    ender.cancel()
    result = build_result(backend.name, transport.timeline, transcript.events)
    latencies = result["latency_ms"]
    return latency_summary(len(turns), latencies, started)


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


async def bench(turns: int) -> dict[str, Any]:
    settings = load_settings()
    warm_up(settings)
    with tempfile.TemporaryDirectory() as folder:
        wavs = synthesize_turns(turns, Path(folder))
        ours = await run_one("pipeline", settings, wavs)
        base = await run_one("baseline", settings, wavs)
    ratio = round(ours["p95_ms"] / base["p95_ms"], 3) if ours["p95_ms"] and base["p95_ms"] else None
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''} cores={_cores()}".strip(),
        "turns": turns,
        "pipeline": ours,
        "baseline": base,
        "p95_ratio": ratio,
        "targets": {"p95_ms_max": 1200, "p95_ratio_max": 0.6},
    }


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--phone", action="store_true", help="the browser path against the phone path")
    args = parser.parse_args(argv)
    hub_offline_environment()
    setup_logging(os.environ.get("BENCH_LOG_LEVEL", "WARNING"), "text")
    if args.phone:
        from tools.bench_phone import compare, print_comparison

        comparison = asyncio.run(compare(args.turns))
        if args.json:
            print(json.dumps(comparison))
        else:
            print_comparison(comparison)
        return 0
    report = asyncio.run(bench(args.turns))
    if args.json:
        print(json.dumps(report))
    else:
        for name in ("pipeline", "baseline"):
            r = report[name]
            print(
                f"{name:9s} p50={r['p50_ms']} ms  p95={r['p95_ms']} ms  max={r['max_ms']} ms  "
                f"({r['replies']}/{r['turns']} replies)"
            )
        print(f"p95 ratio pipeline/baseline = {report['p95_ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
