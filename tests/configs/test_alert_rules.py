"""The alert rules (``configs/prometheus/alerts.yml``) are valid, do what their unit tests say, and
read only metrics the app exports; each names its runbook page.

Debian's ``promtool`` (package ``prometheus``, installed by ``scripts/test.sh``) checks the files
and runs ``alerts_test.yml``: every alert firing on the series that should fire it and silent on
the healthy ones next to them. The end to end test, a real Prometheus scraping the running server,
is ``tests/web/test_prometheus_e2e.py``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.configs.test_dashboard import exported_metric_names, metric_names
from tests.debian_tools import debian_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = REPO_ROOT / "configs" / "prometheus"
ALERTS = RULES_DIR / "alerts.yml"
OPENING_HOURS = RULES_DIR / "opening_hours.example.yml"
# Read by the rules but not the app's: Prometheus's own scrape health, and the optional recording rule.
NOT_THE_APPS = {"up", "patient_advocacy:opening_hours"}


def promtool() -> str:
    return debian_tool("promtool", "prometheus (promtool)")


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def test_promtool_accepts_the_rule_files() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS), str(OPENING_HOURS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_silent_as_its_promtool_tests_say() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULES_DIR,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_both_firing_and_silent() -> None:
    tests = yaml.safe_load((RULES_DIR / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for rule in alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']}: never tested firing"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']}: never tested silent"


def test_every_alert_says_what_happened_and_names_its_runbook_page() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert annotations["summary"].strip()
        assert annotations["runbook"] == f"docs/runbook/{kebab(rule['alert'])}.md"
        assert rule["labels"]["severity"] in ("critical", "warning")


def test_every_alert_reads_only_metrics_the_app_exports() -> None:
    exported = exported_metric_names() | NOT_THE_APPS
    for rule in alert_rules():
        unknown = metric_names(rule["expr"]) - exported
        assert unknown == set(), f"{rule['alert']} reads {sorted(unknown)}, which nothing exports"


def test_the_alerts_an_operator_needs_are_there() -> None:
    assert {rule["alert"] for rule in alert_rules()} >= {
        "PredictionLatencyHigh",
        "EscalationNotDelivered",
        "EscalationStoreFailing",
        "RedactionFailed",
        "ErrorRateHigh",
        "SessionsNearCapacity",
        "ModelBackendDown",
        "SipBridgeDown",
        "NoSuccessfulSession",
    }
