"""``python -m tools <benchmark>``: one command for the benchmarks, each with its own options."""

from __future__ import annotations

import pytest

from tools.__main__ import BENCHMARKS, main


def test_an_unknown_benchmark_is_refused_with_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["speed"]) == 2
    usage = capsys.readouterr().err
    assert all(name in usage for name in BENCHMARKS)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_each_benchmark_name_reaches_that_benchmarks_own_options(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    assert f"python -m {BENCHMARKS[name]}" in capsys.readouterr().out
