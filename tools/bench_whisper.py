"""Benchmark: Whisper passes of concurrent sessions, batched against serialised.

``python -m tools.bench_whisper --concurrent 1,2,4 --json`` prints one JSON line. For each K, K
sessions each send a short phrase (3 to 6 s of the offline Piper voice) at the same moment, from
threads of their own as the server's sessions do (``asyncio.to_thread``); the wall time until all K
are transcribed is measured with the product's transcriber (``batch=True``: the passes that queue
while one runs are decoded together) and with one that runs every pass alone (``batch=False``), in
the same run, best of ``--repeat``. Two cases:

- ``same``: every phrase opens its turn (the same prompt), so the queued ones decode as one batch;
- ``varied``: phrases later in their turns, each with the turn so far as its prompt (of different
  lengths), which CTranslate2 cannot decode together: batching can only save the hand-overs.

Each row says whether the two transcribers wrote the same text (``same_text``) and how many passes
a batch held on average (``mean_batch``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from configs.settings import load_settings
from media.audio_files import read_mono_int16
from media.synth import synthesize
from pipeline.session import INPUT_RATE, whisper_dir
from pipeline.transcriber import Transcriber

PHRASES = [
    "I have had a red itchy rash on my left forearm for about two weeks now.",
    "It gets much worse at night and after I have been working in the garden.",
    "There is also a small dry patch on my elbow that feels rough to touch.",
    "I tried a moisturising cream from the chemist but it did not help at all.",
    "My skin usually burns in the sun and I have quite a lot of moles.",
    "Nobody else at home has it and I have not started any new medicines.",
    "The patch is slightly raised, pink rather than dark, and it does not bleed.",
    "I had eczema as a child but it went away when I was about ten years old.",
]
EARLIER = "It started on my back. Then it spread to both of my arms and it itches a lot at night."
TIMEOUT_S = 120  # one round of K passes; a hung model fails the benchmark instead of blocking it


def concurrent_passes(
    transcriber: Transcriber, passes: list[tuple[np.ndarray, str]]
) -> tuple[float, list[str]]:
    """Seconds until every pass, sent at one moment from a thread each, is transcribed; their texts."""
    texts: list[str] = [""] * len(passes)
    start = threading.Barrier(len(passes) + 1)

    def one(index: int) -> None:
        start.wait(TIMEOUT_S)
        texts[index] = transcriber.transcribe(*passes[index])

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(passes))]
    for thread in threads:
        thread.start()
    start.wait(TIMEOUT_S)
    began = time.perf_counter()
    for thread in threads:
        thread.join(TIMEOUT_S)
        if thread.is_alive():
            raise TimeoutError(f"a Whisper pass took over {TIMEOUT_S} s")
    return time.perf_counter() - began, texts


def measure(levels: list[int], repeat: int) -> dict[str, Any]:
    """The report: one row per K and prompt case."""
    settings = load_settings()
    voice = settings.voice
    model = whisper_dir(settings)
    batched = Transcriber(
        model, voice.whisper_compute_type, voice.whisper_threads, voice.vocabulary, batch=True
    )
    alone = Transcriber(
        model, voice.whisper_compute_type, voice.whisper_threads, voice.vocabulary, batch=False
    )
    batched.warm_up()
    alone.warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        phrases = [
            read_mono_int16(synthesize(text, Path(tmp) / f"{i}.wav"), INPUT_RATE)
            for i, text in enumerate(PHRASES[: max(levels)])
        ]
    rows = []
    for k in levels:
        for case in ("same", "varied"):
            prompts = [""] * k if case == "same" else [EARLIER[: 20 + 15 * i] for i in range(k)]
            passes = [(phrases[i % len(phrases)], prompts[i]) for i in range(k)]
            before = (batched.passes.stats.passes, batched.passes.stats.batches)
            times: dict[str, list[float]] = {"batched": [], "serial": []}
            same_text = True
            for _ in range(repeat):
                batched_s, batched_texts = concurrent_passes(batched, passes)
                serial_s, serial_texts = concurrent_passes(alone, passes)
                times["batched"].append(batched_s)
                times["serial"].append(serial_s)
                same_text = same_text and batched_texts == serial_texts
            passes_run = batched.passes.stats.passes - before[0]
            batches_run = batched.passes.stats.batches - before[1]
            best = {mode: min(seconds) for mode, seconds in times.items()}
            rows.append(
                {
                    "k": k,
                    "prompts": case,
                    "batched_s": round(best["batched"], 3),
                    "serial_s": round(best["serial"], 3),
                    "speedup": round(best["serial"] / best["batched"], 2),
                    "same_text": same_text,
                    "mean_batch": round(passes_run / max(1, batches_run), 2),
                }
            )
    return {
        "cores": os.cpu_count(),
        "whisper_threads": voice.whisper_threads,
        "phrase_s": [round(p.size / INPUT_RATE, 2) for p in phrases],
        "repeat": repeat,
        "results": rows,
    }


def parse_levels(text: str) -> list[int]:
    levels = sorted({int(part) for part in text.split(",") if part.strip()})
    if not levels or levels[0] < 1 or levels[-1] > len(PHRASES):
        raise argparse.ArgumentTypeError(
            f"concurrent passes are whole numbers from 1 to {len(PHRASES)}, e.g. 1,2,4"
        )
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_whisper", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--concurrent", type=parse_levels, default=[1, 2, 4], help="levels, e.g. 1,2,4")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per level; the best is kept")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    report = measure(args.concurrent, max(1, args.repeat))
    if args.json:
        print(json.dumps(report))
    else:
        for row in report["results"]:
            print(
                f"K={row['k']} {row['prompts']:6} batched {row['batched_s']:.3f} s, "
                f"serial {row['serial_s']:.3f} s (x{row['speedup']}), "
                f"mean batch {row['mean_batch']}, same text: {row['same_text']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
