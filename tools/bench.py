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
import sys
from typing import Any

from agent.redacted_logs import setup_redacted_logging
from configs.settings import hub_offline_environment
from tools.bench_paths import bench_setup, machine, run_one
from tools.bench_phone import compare, print_comparison


async def bench(turns: int) -> dict[str, Any]:
    async with bench_setup(turns) as (product, wavs):
        ours = await run_one("pipeline", product, wavs)
        base = await run_one("baseline", product, wavs)
    ratio = round(ours["p95_ms"] / base["p95_ms"], 3) if ours["p95_ms"] and base["p95_ms"] else None
    return {
        "machine": machine(),
        "turns": turns,
        "pipeline": ours,
        "baseline": base,
        "p95_ratio": ratio,
        "targets": {"p95_ms_max": 1200, "p95_ratio_max": 0.6},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--phone", action="store_true", help="the browser path against the phone path")
    parser.add_argument("--log-level", default="WARNING", help="what reaches stderr while it runs")
    args = parser.parse_args(argv)
    hub_offline_environment()
    setup_redacted_logging(args.log_level, "text")
    if args.phone:
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
