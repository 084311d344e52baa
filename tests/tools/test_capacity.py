"""The capacity benchmark: the figure it names, and a real patient answered over WebRTC."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tools.capacity import Level, LevelDetails, capacity, haproxy_added, p95, summarise

LEVEL_KEYS = {"sessions", "p50_ms", "p95_ms", "turns", "turns_lost", "cpu_pct", "rss_mb"}


def level(sessions: int, p95_ms: float, turns_lost: int = 0, turns: int = 8) -> Level:
    return Level(sessions, p95_ms / 2, p95_ms, turns, turns_lost, 100.0, 1000.0)


def test_capacity_is_the_largest_level_answered_in_time_with_no_turn_lost() -> None:
    levels = [
        level(1, 700.0),
        level(2, 1200.0),  # at the bar: carried
        level(4, 1300.0),  # too slow
        level(6, 900.0, turns_lost=1),  # fast, but a patient went unanswered
        level(8, 0.0, turns_lost=8),  # nobody answered at all
    ]
    assert capacity(levels) == 2
    assert capacity(levels, p95_limit_ms=1300.0) == 4


def test_no_level_carried_is_a_capacity_of_zero() -> None:
    assert capacity([]) == 0
    assert capacity([level(1, 1500.0), level(2, 800.0, turns_lost=2)]) == 0
    assert capacity([level(1, 0.0, turns=0)]) == 0  # nothing was measured


def test_every_scripted_turn_without_a_reply_is_lost() -> None:
    summary = summarise(2, 8, [500.0, 700.0, 900.0], cpu_pct=150.04, rss_mb=1200.06)
    assert (summary.turns, summary.turns_lost, summary.p50_ms) == (8, 5, 700.0)
    assert summary.p95_ms == pytest.approx(880.0)
    unanswered = summarise(1, 3, [], cpu_pct=10.0, rss_mb=900.0)
    assert unanswered.turns_lost == 3 and capacity([unanswered]) == 0


@pytest.mark.slow
def test_one_real_patient_is_answered_by_ours_and_by_the_stock_assembly() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tools.capacity", "--sessions", "1", "--turns", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(report) == {"machine", "capacity", "baseline_capacity", "levels", "baseline_levels"}
    assert isinstance(report["machine"], str) and report["machine"]
    for levels in (report["levels"], report["baseline_levels"]):
        [one] = levels
        assert set(one) == LEVEL_KEYS
        assert (one["sessions"], one["turns"], one["turns_lost"]) == (1, 1, 0), run.stderr[-3000:]
        assert one["p50_ms"] > 0 and one["p95_ms"] > 0  # the patient heard the agent reply
        assert one["cpu_pct"] > 0 and one["rss_mb"] > 100  # the server's own process was measured
    assert report["capacity"] in (0, 1) and report["baseline_capacity"] in (0, 1)


def test_what_haproxy_added_is_the_difference_of_the_p95s_at_the_same_level() -> None:
    direct = (level(2, 900.0), LevelDetails(offers_ms=[40.0, 60.0]))
    requests = {"direct": [1.0] * 19 + [3.0], "haproxy": [1.5] * 19 + [5.0]}
    through = (level(2, 950.0), LevelDetails(offers_ms=[45.0, 70.0], requests_ms=requests))
    added = haproxy_added(direct, through)
    assert added["sessions"] == 2
    assert added["request_p50_ms"] == 1.5
    assert added["request_p95_added_ms"] == pytest.approx(
        p95(requests["haproxy"]) - p95(requests["direct"]), abs=0.1
    )
    assert added["request_p95_added_ms"] > 0  # through HAProxy is the slower way here
    assert added["offer_p95_ms"] == p95([45.0, 70.0])
    assert added["offer_p95_added_ms"] == pytest.approx(p95([45.0, 70.0]) - p95([40.0, 60.0]), abs=0.1)
    assert added["voice_p95_added_ms"] == 50.0
