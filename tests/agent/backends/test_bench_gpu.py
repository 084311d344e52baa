"""The GPU benchmark, in its tiny CPU form: the same MedGemma path with a static cache and warm-up."""

from __future__ import annotations

import json

import pytest

from agent.backends.bench_gpu import MEDGEMMA_4B, main


def test_tiny_benchmark_reports_latency_through_the_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--tiny", "--json", "--runs", "2", "--max-new-tokens", "20"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["device"] == "cpu" and result["static_cache"] is True
    assert result["warm_up_s"] > 0
    assert len(result["runs"]) == 2
    for run in result["runs"]:
        assert run["new_tokens"] == 20
        assert run["prompt_tokens"] > 300  # the real system prompt, history and one camera frame
        assert 0 < run["ttft_s"] <= run["first_sentence_s"] <= run["total_s"]
        assert run["tokens_per_s"] > 0
    assert set(result["median"]) == {"ttft_s", "first_sentence_s", "tokens_per_s"}


def test_the_full_shape_is_medgemma_4b() -> None:
    text, vision = MEDGEMMA_4B.text, MEDGEMMA_4B.vision
    assert (text["hidden_size"], text["num_hidden_layers"], text["num_attention_heads"]) == (2560, 34, 8)
    assert (text["num_key_value_heads"], text["head_dim"], text["sliding_window"]) == (4, 256, 1024)
    assert (vision["hidden_size"], vision["num_hidden_layers"], vision["image_size"]) == (1152, 27, 896)
    assert vision["patch_size"] == 14 and MEDGEMMA_4B.tokens_per_image == 256
