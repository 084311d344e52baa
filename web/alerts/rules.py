"""The rule files Prometheus loads (``configs/prometheus/alerts.yml``), evaluated as Prometheus does.

One file, two evaluators: Prometheus in a deployment, ``RuleEngine`` in the app when no
Prometheus is configured (``web/alerts/local.py``) and in the test that replays
``alerts_test.yml`` against it. The engine follows Prometheus's rule manager: rules in file
order (a recorded series is there for the rules after it), an alert pending from the first
evaluation its expression returns a series until ``for`` has passed, then firing, and gone as soon
as the expression returns nothing for it. The annotations are rendered with the small part of
Go's templates the rules use (``{{ $labels.x }}``, ``{{ $value }}`` with ``humanize`` or
``humanizePercentage``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from web.alerts.history import History, Labels
from web.alerts.promql import NAME, Unsupported, evaluate, parse
from web.alerts.records import FiredAlert

log = logging.getLogger(__name__)

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_ALERT_KEYS = {"alert", "expr", "for", "labels", "annotations"}
_TEMPLATE = re.compile(r"{{\s*(\$labels\.(\w+)|\$value(\s*\|\s*(\w+))?)\s*}}")


def seconds(duration: str | None) -> float:
    """A Prometheus duration (``5m``, ``1h30m``) in seconds."""
    text = (duration or "0s").strip()
    parts = _DURATION.findall(text)
    if "".join(n + u for n, u in parts) != text:
        raise Unsupported(f"the duration {text!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: Any  # the syntax tree
    for_s: float
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: Any


@dataclass
class Rules:
    """The rules of some files, in order, and those this evaluator cannot run (name: why)."""

    rules: list[AlertRule | RecordingRule] = field(default_factory=list)
    unsupported: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, files: Sequence[Path]) -> Rules:
        loaded = cls()
        for path in files:
            for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
                for rule in group.get("rules", []):
                    loaded._add(rule)
        return loaded

    def _add(self, rule: dict[str, Any]) -> None:
        name = rule.get("alert") or rule.get("record") or "?"
        try:
            expr = parse(str(rule["expr"]))
            if "record" in rule:
                self.rules.append(RecordingRule(rule["record"], expr))
                return
            if set(rule) - _ALERT_KEYS:
                raise Unsupported(f"the rule keys {sorted(set(rule) - _ALERT_KEYS)}")
            labels = {k: str(v) for k, v in (rule.get("labels") or {}).items()}
            annotations = {k: str(v) for k, v in (rule.get("annotations") or {}).items()}
            self.rules.append(AlertRule(name, expr, seconds(rule.get("for")), labels, annotations))
        except Unsupported as exc:
            self.unsupported[name] = str(exc)

    def longest_windows(self) -> dict[str, float]:
        """Per metric name, how far back any rule reads it (range + offset + ``for``), seconds."""
        import promql_parser as pq

        windows: dict[str, float] = {}
        for rule in self.rules:
            hold = rule.for_s if isinstance(rule, AlertRule) else 0.0

            def visit(node: Any, hold: float = hold) -> None:
                span = 0.0
                if isinstance(node, pq.MatrixSelector):
                    span = node.range.total_seconds()
                    node = node.vector_selector
                if isinstance(node, pq.VectorSelector) and node.name:
                    offset = node.offset.total_seconds() if node.offset else 0.0
                    windows[node.name] = max(windows.get(node.name, 0.0), span + offset + hold)

            pq.walk(rule.expr, visit)
        return windows


def humanize(value: float) -> str:
    """Prometheus's ``humanize``: 2950 -> ``2.95k``, 0.005 -> ``5m``."""
    if value == 0 or math.isnan(value) or math.isinf(value):
        return _go_g(value)
    prefix = ""
    if abs(value) >= 1:
        for step in "kMGTPEZY":
            if abs(value) < 1000:
                break
            prefix, value = step, value / 1000
    else:
        for step in "munpfazy":
            if abs(value) >= 1:
                break
            prefix, value = step, value * 1000
    return _go_g(value) + prefix


def _go_g(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.4g}"


def render(template: str, labels: dict[str, str], value: float) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(2):
            return labels.get(match.group(2), "")
        function = match.group(4)
        if function == "humanize":
            return humanize(value)
        if function == "humanizePercentage":
            return _go_g(value * 100) + "%"
        if function is None:
            return f"{value:g}"
        return match.group(0)

    return _TEMPLATE.sub(one, template)


@dataclass
class _Active:
    since: float
    value: float
    labels: dict[str, str]


class RuleEngine:
    """Evaluates ``rules`` over ``history`` at each ``evaluate(at)``; keeps each alert's state."""

    def __init__(self, rules: Rules, history: History) -> None:
        self.rules = rules
        self.history = history
        self._active: dict[str, dict[Labels, _Active]] = {}

    def evaluate(self, at: float) -> list[FiredAlert]:
        """One evaluation of every rule at ``at``; the alerts firing after it."""
        for rule in self.rules.rules:
            try:
                result = evaluate(rule.expr, at, self.history)
            except Unsupported as exc:  # on data (many-to-many): as Prometheus, the rule fails this time
                log.warning("rule %s not evaluated: %s", getattr(rule, "name", rule), exc)
                continue
            vector = [] if isinstance(result, float) else result
            if isinstance(rule, RecordingRule):
                recorded = [(_relabelled(s.labels, rule.record), s.value) for s in vector]
                self.history.scrape(f"record:{rule.record}", at, recorded)
                continue
            self._step(rule, at, vector)
        return self.firing(at)

    def _step(self, rule: AlertRule, at: float, vector: list[Any]) -> None:
        active = self._active.setdefault(rule.name, {})
        now: dict[Labels, _Active] = {}
        for sample in vector:
            labels = {**dict(sample.without(NAME)), **rule.labels, "alertname": rule.name}
            key = tuple(sorted(labels.items()))
            before = active.get(key)
            now[key] = _Active(before.since if before else at, sample.value, labels)
        self._active[rule.name] = now

    def firing(self, at: float) -> list[FiredAlert]:
        out = []
        for rule in self.rules.rules:
            if not isinstance(rule, AlertRule):
                continue
            for alert in self._active.get(rule.name, {}).values():
                if at - alert.since >= rule.for_s:
                    annotations = {
                        k: render(v, alert.labels, alert.value) for k, v in rule.annotations.items()
                    }
                    since = datetime.fromtimestamp(alert.since, UTC)
                    out.append(FiredAlert.from_labels(alert.labels, annotations, since))
        return out


def _relabelled(labels: Labels, name: str) -> Labels:
    return tuple(sorted({**dict(labels), NAME: name}.items()))
