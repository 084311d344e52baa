"""The benchmarks under one command: ``python -m tools <benchmark> [its options]``.

    python -m tools capacity --sessions 1,2,4,6,8 --json
    python -m tools turns --json
    python -m tools soak --sessions 100 --concurrent 3 --json
    python -m tools latency --turns 20 --json
    python -m tools whisper --concurrent 1,2,4 --json
    python -m tools gate --env staging [--fast] --json     # the promotion gates (docs/promotion_criteria.md)

Each name runs that benchmark's own module (``python -m tools.capacity`` is the same command),
so the options and the JSON are documented once, in the module.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "capacity": "tools.capacity",
    "turns": "tools.turns",
    "soak": "tools.soak",
    "latency": "tools.bench",
    "whisper": "tools.bench_whisper",
    "gate": "tools.gate",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in BENCHMARKS:
        names = ", ".join(BENCHMARKS)
        print(f"usage: python -m tools {{{names}}} [options]\n\n{__doc__}", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[args[0]])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
