"""Promotion gates (``python -m tools gate``): every gate measured by its real command, a figure
over its limit or never measured fails the run, and the limits are data per environment.

The fast subset (text safety on a sample, the alert rules' promtool tests, one replayed red-flag
conversation) runs here as CI runs it; the heavy probes (latency, capacity, soak, speech safety,
the unit suite) run their real commands with the smallest arguments, to show their reports are
read; the full gate is for the machine a build is promoted from.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from configs.settings import REPO_ROOT
from tests.debian_tools import debian_tool
from tools.gate import GATES_FILE, PROBES, Verdict, load_gates, main, run_probe

FAST_PROBES = {"safety_text", "alert_rules", "replay"}


def write_gates(path: Path, env: str, probes: dict[str, dict]) -> Path:
    path.write_text(yaml.safe_dump({env: probes}))
    return path


def sample_suite(folder: Path, *, passing: int, failing: int) -> Path:
    """A test folder of its own (no conftest of ours), with that many passing and failing tests."""
    folder.mkdir()
    tests = [f"def test_pass_{i}():\n    assert True\n" for i in range(passing)]
    tests += [f"def test_fail_{i}():\n    assert 1 == 2\n" for i in range(failing)]
    (folder / "test_sample.py").write_text("\n\n".join(tests))
    return folder


def row(table: str, gate: str) -> list[str]:
    [line] = [line for line in table.splitlines() if line.startswith(gate + " ")]
    return line.split()


@pytest.mark.slow
def test_the_fast_subset_runs_its_real_commands_and_every_gate_passes() -> None:
    debian_tool("promtool", "prometheus (promtool)")
    done = subprocess.run(
        [sys.executable, "-m", "tools", "gate", "--env", "staging", "--fast", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr
    assert report["env"] == "staging" and report["fast"] and report["passed"]
    by_name = {gate["name"]: gate for gate in report["gates"]}
    assert {name.split(".")[0] for name in by_name} == FAST_PROBES
    assert by_name["replay.escalated"]["measured"] == 1  # the replayed red flag reached a clinician
    assert by_name["replay.pii_leaks"]["measured"] == 0  # and the patient's name is in no output
    assert by_name["safety_text.escalation_recall"]["required"] == {"kind": "min", "value": 1.0}
    assert by_name["alert_rules.failing_tests"]["command"].startswith(
        "promtool test rules configs/prometheus/alerts_test.yml"
    )
    assert all(gate["verdict"] == "passed" and gate["measured"] is not None for gate in report["gates"])
    assert "measured" in done.stderr and "required" in done.stderr  # the table, beside the JSON


def test_a_figure_over_its_limit_fails_the_gate_and_its_row_shows_measured_and_required(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = sample_suite(tmp_path / "suite", passing=2, failing=1)
    limits = {"failed": {"max": 0}, "passed": {"min": 1}}
    gates = write_gates(
        tmp_path / "gates.yaml",
        "staging",
        {"unit_suite": {"args": [str(suite), "-q"], "timeout_s": 120, "limits": limits}},
    )
    assert main(["--env", "staging", "--gates", str(gates)]) == 1
    table = capsys.readouterr().out
    assert row(table, "unit_suite.failed")[:5] == ["unit_suite.failed", "1", "<=", "0", "FAILED"]
    assert row(table, "unit_suite.passed")[:5] == ["unit_suite.passed", "2", ">=", "1", "PASSED"]
    assert "1 of 2 gates not passed" in table


def test_the_same_measurement_passes_its_limit_and_fails_a_stricter_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = sample_suite(tmp_path / "suite", passing=2, failing=0)
    lenient, strict = (
        write_gates(
            tmp_path / f"{name}.yaml",
            "production",
            {"unit_suite": {"args": [str(suite)], "timeout_s": 120, "limits": {"passed": {"min": bound}}}},
        )
        for name, bound in (("lenient", 2), ("strict", 3))
    )
    assert main(["--env", "production", "--gates", str(lenient)]) == 0
    assert "every gate passed" in capsys.readouterr().out

    assert main(["--env", "production", "--gates", str(strict), "--json"]) == 1
    captured = capsys.readouterr()
    [gate] = json.loads(captured.out)["gates"]
    assert (gate["measured"], gate["threshold"], gate["verdict"]) == (2, ">= 3", "failed")
    assert row(captured.err, "unit_suite.passed")[:5] == ["unit_suite.passed", "2", ">=", "3", "FAILED"]


def test_a_gate_whose_program_is_missing_is_not_measured_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no promtool on it
    gates = write_gates(
        tmp_path / "gates.yaml",
        "staging",
        {"alert_rules": {"args": [], "timeout_s": 60, "limits": {"failing_tests": {"max": 0}}}},
    )
    assert main(["--env", "staging", "--gates", str(gates)]) == 1
    table = capsys.readouterr().out
    line = next(line for line in table.splitlines() if line.startswith("alert_rules.failing_tests"))
    assert line.split()[1:4] == ["-", "<=", "0"]
    assert "NOT MEASURED (promtool is not installed" in line


def test_a_probe_past_its_timeout_is_not_measured(tmp_path: Path) -> None:
    suite = sample_suite(tmp_path / "suite", passing=1, failing=0)
    config = load_gates(
        write_gates(
            tmp_path / "gates.yaml",
            "staging",
            {"unit_suite": {"args": [str(suite)], "timeout_s": 0.05, "limits": {"failed": {"max": 0}}}},
        ),
        "staging",
    )["unit_suite"]
    [gate] = run_probe("unit_suite", config, fast=False)
    assert gate.verdict is Verdict.NOT_MEASURED and not gate.passed and gate.measured is None
    assert gate.note == "did not finish within 0.05 s"


@pytest.mark.parametrize(
    ("env", "probes", "message"),
    [
        ("qa", {}, "has no gates for 'qa'"),
        ("staging", {"latency": {"args": [], "timeout_s": 1, "limits": {}}}, "latency: no such probe"),
        (
            "staging",
            {"soak": {"args": [], "timeout_s": 1, "limits": {"p95_ms": {"max": 1}}}},
            "soak does not measure p95_ms",
        ),
        (
            "staging",
            {"soak": {"args": [], "timeout_s": 1, "limits": {"crashes": {"min": 0, "max": 0}}}},
            "either {min: N} or {max: N}",
        ),
    ],
)
def test_a_wrong_gates_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: str, probes: dict, message: str
) -> None:
    gates = write_gates(tmp_path / "gates.yaml", "staging", {}) if env == "qa" else None
    gates = gates or write_gates(tmp_path / "gates.yaml", env, probes)
    assert main(["--env", env, "--gates", str(gates)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_each_environment_gates_every_probe_and_production_is_at_least_as_strict() -> None:
    staging, production = load_gates(GATES_FILE, "staging"), load_gates(GATES_FILE, "production")
    for probes in (staging, production):
        assert set(probes) == set(PROBES)
        assert {name for name, config in probes.items() if config.fast_args is not None} == FAST_PROBES
    for name, config in staging.items():
        assert set(production[name].limits) == set(config.limits)
        for figure, limit in config.limits.items():
            stricter = production[name].limits[figure]
            if limit.min is not None:
                assert stricter.min is not None and stricter.min >= limit.min, f"{name}.{figure}"
            else:
                assert stricter.max is not None and stricter.max <= limit.max, f"{name}.{figure}"


# The heavy probes' real commands, with the smallest arguments: their reports are read, every
# figure measured (whether it meets the bar on this box is the full gate's business).
SMALLEST = {
    "unit_suite": ["tests/tools/test_main.py", "-q"],
    "safety_audio": ["--split", "core", "--heard", "--sample", "1", "--conditions", "clean"],
    "voice_to_voice": ["--turns", "1"],
    "capacity": ["--sessions", "1", "--turns", "1", "--no-baseline"],
    "soak": ["--sessions", "1", "--concurrent", "1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALLEST))
def test_each_heavy_probe_measures_every_figure_with_its_real_command(name: str, tmp_path: Path) -> None:
    limits = {figure: {"min": -1e9} for figure in PROBES[name].figures}
    config = load_gates(
        write_gates(
            tmp_path / "gates.yaml",
            "staging",
            {name: {"args": SMALLEST[name], "timeout_s": 540, "limits": limits}},
        ),
        "staging",
    )[name]
    gates = run_probe(name, config, fast=False)
    assert [g.verdict for g in gates] == [Verdict.PASSED] * len(gates), [(g.name, g.note) for g in gates]
    assert all(g.measured is not None for g in gates)
