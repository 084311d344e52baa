"""The Whisper batching benchmark: an operator gets one JSON line comparing batched and serialised passes."""

from __future__ import annotations

import json

import pytest

from tools.bench_whisper import main

pytestmark = pytest.mark.slow


def test_the_benchmark_prints_batched_and_serial_times_with_the_same_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--concurrent", "1,2", "--repeat", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(row["k"], row["prompts"]) for row in report["results"]] == [
        (1, "same"),
        (1, "varied"),
        (2, "same"),
        (2, "varied"),
    ]
    for row in report["results"]:
        assert row["batched_s"] > 0 and row["serial_s"] > 0
        assert row["same_text"]  # batching never changes what the patient is heard to say
