"""The Grafana dashboard (``configs/grafana/dashboards/patient-advocacy-agent.json``) shows what the
app really exports: every panel's query names a metric ``/metrics`` serves, under its exported name
(counters with ``_total``, histograms with ``_bucket``/``_sum``/``_count``).

The names are collected from prometheus_client's registry after importing the app (``web.app``
imports every module that defines a metric), so a metric renamed in code and not on the dashboard
fails here, not on an operator's empty panel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "configs" / "grafana" / "dashboards" / "patient-advocacy-agent.json"

# PromQL words that are not metric names.
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "inf", "nan", "le",
}  # fmt: skip
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def exported_metric_names() -> set[str]:
    """Every sample name the app's ``/metrics`` can serve, labelled children or not yet."""
    import web.app  # noqa: F401 - registers every metric of the app

    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, labels, keywords or ranges)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges, subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    words = re.findall(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text)
    return {word for word in words if word.lower() not in _KEYWORDS}


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # rows that hold their panels
    return found


def test_the_expression_reader_finds_metrics_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(prediction_latency_ms_bucket{instance=~"$instance"}'
        "[$__rate_interval]))) / on () group_left sum(active_sessions) > bool 0.8"
    )
    assert metric_names(expr) == {"prediction_latency_ms_bucket", "active_sessions"}


def test_every_panel_query_names_a_metric_the_app_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_metric_names()
    used: dict[str, set[str]] = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            names = metric_names(target["expr"])
            assert names, f"panel {panel['title']!r}: a query that reads no metric"
            used[panel["title"]] = used.get(panel["title"], set()) | names
    unknown = {title: sorted(names - exported) for title, names in used.items() if names - exported}
    assert unknown == {}, f"panels reading metrics the app does not export: {unknown}"


def test_the_dashboard_shows_what_an_operator_acts_on() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(metric_names(t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])))
    for needed in (
        "prediction_latency_ms_bucket",
        "escalations_total",
        "escalation_failures_total",
        "escalation_store_failing",
        "active_sessions",
        "session_capacity",
        "sessions_refused_total",
        "replies_dropped_total",
        "barge_in_stop_seconds_bucket",
        "stage_latency_seconds_bucket",
        "retrievals_total",
        "processor_errors_total",
        "model_backend_timeouts_total",
        "redaction_failures_total",
    ):
        assert needed in used, f"no panel shows {needed}"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "two panels share an id (Grafana keeps only one)"
