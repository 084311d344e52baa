"""The app's own evaluation of the alert rules (``web/alerts``) agrees with Prometheus.

Every rule of ``configs/prometheus/alerts.yml`` (and the optional opening-hours rule) must be one
the evaluator runs: a rule that uses PromQL it does not implement fails here, not by never firing
on a box without Prometheus. Then every case of ``alerts_test.yml`` (the file promtool checks in
``tests/configs/test_alert_rules.py``) is replayed through ``RuleEngine``: the same series, the
same evaluation steps, and the same alerts firing at each ``eval_time`` with the same labels and
the same rendered annotations as promtool expects.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from web.alerts.history import History, labels_of
from web.alerts.promql import Unsupported, evaluate, parse
from web.alerts.rules import RuleEngine, Rules, humanize, seconds

RULES_DIR = Path(__file__).resolve().parents[2] / "configs" / "prometheus"
TESTS = yaml.safe_load((RULES_DIR / "alerts_test.yml").read_text())
RULE_FILES = [RULES_DIR / name for name in TESTS["rule_files"]]
_NUMBER = r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?"
_TERM = re.compile(rf"^({_NUMBER}|_)(?:([+-]\d+(?:\.\d+)?)?x(\d+))?$")


def expand(values: str) -> list[float | None | str]:
    """promtool's series notation: ``0+60x20``, ``9x10``, ``1 1 0``, ``_`` (no sample), ``stale``."""
    out: list[float | None | str] = []
    for term in values.split():
        if term == "stale":
            out.append("stale")
            continue
        match = _TERM.match(term)
        assert match, f"series notation {term!r}"
        start, step, times = match.groups()
        if start == "_":
            out.extend([None] * (int(times) if times else 1))
            continue
        count = int(times) + 1 if times else 1
        out.extend(float(start) + i * float(step or 0) for i in range(count))
    return out


def series_labels(text: str) -> tuple[str, dict[str, str]]:
    name, _, rest = text.partition("{")
    return name, dict(re.findall(r'(\w+)="([^"]*)"', rest))


def history_of(case: dict[str, Any]) -> History:
    history = History(default_retention_s=math.inf)
    step = seconds(case.get("interval", "1m"))
    for series in case["input_series"]:
        name, labels = series_labels(series["series"])
        for i, value in enumerate(expand(str(series["values"]))):
            if value is not None:
                history.add(labels_of(name, labels), i * step, None if value == "stale" else value)
    return history


def test_every_rule_is_one_the_app_can_evaluate() -> None:
    rules = Rules.load(RULE_FILES)
    assert rules.unsupported == {}
    assert len(rules.rules) == sum(
        len(group["rules"]) for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
    )


def test_a_rule_the_evaluator_cannot_run_is_named_not_silently_skipped(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "g",
                        "rules": [
                            {"alert": "Ok", "expr": "up == 0"},
                            {"alert": "Quantile", "expr": "quantile_over_time(0.9, up[5m]) > 1"},
                            {"alert": "Sub", "expr": "max_over_time(rate(x_total[1m])[5m:1m]) > 1"},
                        ],
                    }
                ]
            }
        )
    )
    loaded = Rules.load([rules])
    assert [rule.name for rule in loaded.rules] == ["Ok"]  # type: ignore[union-attr]
    assert set(loaded.unsupported) == {"Quantile", "Sub"}
    with pytest.raises(Unsupported):
        parse("topk(3, up)")


def _cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (f"{case['name']} @ {check['eval_time']} {check['alertname']}", case, check)
        for case in TESTS["tests"]
        for check in case["alert_rule_test"]
    ]


@pytest.mark.parametrize(("case", "check"), [c[1:] for c in _cases()], ids=[c[0] for c in _cases()])
def test_the_app_fires_what_promtool_fires(case: dict[str, Any], check: dict[str, Any]) -> None:
    history = history_of(case)
    engine = RuleEngine(Rules.load(RULE_FILES), history)
    interval = seconds(TESTS.get("evaluation_interval", "1m"))
    end = seconds(check["eval_time"])
    at, fired = 0.0, []
    while at <= end:
        fired = engine.evaluate(at)
        at += interval
    got = sorted(
        (
            {**alert.labels, "severity": alert.severity.value},
            {"summary": alert.summary, "runbook": alert.runbook},
        )
        for alert in fired
        if alert.name == check["alertname"]
    )
    expected = sorted(
        ({str(k): str(v) for k, v in alert["exp_labels"].items()}, alert["exp_annotations"])
        for alert in check["exp_alerts"]
    )
    assert got == expected


def test_humanize_writes_numbers_as_prometheus_does() -> None:
    assert [humanize(v) for v in (2950.0, 1.0, 0.0, 1234567.0, 0.005)] == ["2.95k", "1", "0", "1.235M", "5m"]


def test_increase_extrapolates_to_the_window_as_prometheus_does() -> None:
    """Counters scraped every 15 s, read as Prometheus 2 reads them (``extrapolatedRate``)."""
    history = History(default_retention_s=math.inf)
    for i in range(5):
        history.add(labels_of("from_zero_total", {}), 100.0 + 15 * i, float(i))  # 0 .. 4
        history.add(labels_of("from_ten_total", {}), 100.0 + 15 * i, 10.0 + i)  # 10 .. 14
    [from_zero] = evaluate(parse("increase(from_zero_total[2m])"), 160.0, history)  # type: ignore[misc]
    [from_ten] = evaluate(parse("increase(from_ten_total[2m])"), 160.0, history)  # type: ignore[misc]
    [rate] = evaluate(parse("rate(from_zero_total[2m])"), 160.0, history)  # type: ignore[misc]
    # From 0: not extrapolated before its first sample (the counter started there): 4.
    assert from_zero.value == pytest.approx(4.0)
    assert rate.value == pytest.approx(4.0 / 120)
    # From 10: 60 s of samples in a 120 s window, extrapolated by half a step (7.5 s) at the start.
    assert from_ten.value == pytest.approx(4.0 * 67.5 / 60)
