"""The fired alerts an operator reads in an incident (``web/alerts``): from the app's own evaluation
of ``configs/prometheus/alerts.yml`` when no Prometheus is configured, from Prometheus's API when
one is, on ``/health/details`` and through ``python -m web.alerts``.

The faults are real: the escalation folder is a file (every record write fails), and a text the
redactor cannot take (over spaCy's length limit). The server is the product as ``python -m web``
builds it, served by uvicorn on 127.0.0.1; Prometheus is Debian's (``tests/web/monitoring.py``).
Whether the app's evaluator agrees with promtool rule by rule is ``test_alert_evaluation.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent import pii
from agent.policy import Urgency
from configs.settings import REPO_ROOT, Settings
from tests.web.monitoring import FIRING_WITHIN_S, firing, free_port, prometheus, serving, wait_for
from tests.web.test_clinician_routes import escalation
from tests.web.test_faults import server_settings
from web.app import create_app
from web.product import Product, build_product

STORE = "EscalationStoreFailing"
TICK = {"evaluation_interval_s": 0.1}


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m web.alerts`` as an operator runs it, with only ``env`` for settings."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("ALERTS__", "MONITORING_TOKEN", "APP_ENV"))
    }
    return subprocess.run(
        [sys.executable, "-m", "web.alerts", *args],
        cwd=REPO_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def details(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/health/details")
    assert response.status_code == 200, response.text
    return response.json()


def names(report: dict[str, Any]) -> list[str]:
    return sorted(alert["name"] for alert in report["firing"])


def store_fault(tmp_path: Path, **alerts: Any) -> tuple[Settings, Product]:
    (tmp_path / "escalations").write_text("")  # the folder is a file: every record write fails
    settings = server_settings(tmp_path, alerts={**TICK, **alerts})
    return settings, build_product(settings, phone=False)


async def hand_over_one(product: Product) -> None:
    """A session hands an escalation to the clinician queue (its record write fails)."""
    await product.queue.add(escalation("room-a", Urgency.EMERGENCY))
    await product.queue.flush(5.0)


async def test_without_prometheus_the_app_fires_the_rule_itself_and_the_operator_command_lists_it(
    tmp_path: Path,
) -> None:
    settings, product = store_fault(tmp_path)
    port = free_port()
    async with serving(create_app(settings, product), port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await asyncio.sleep(0.5)  # a few evaluations on healthy metrics
            healthy = (await details(client))["alerts"]
            quiet = await asyncio.to_thread(cli, "--server", f"http://127.0.0.1:{port}")

            await hand_over_one(product)

            async def listed() -> bool:
                return STORE in names((await details(client))["alerts"])

            await wait_for(listed, 10, f"{STORE} on /health/details")
            report = (await details(client))["alerts"]
            public = (await client.get("/health")).json()
            command = await asyncio.to_thread(cli, "--json", "--server", f"http://127.0.0.1:{port}")
            text = await asyncio.to_thread(cli, "--server", f"http://127.0.0.1:{port}")

    assert healthy == {"source": "local", "firing": []}
    assert quiet.returncode == 0 and "nothing is firing" in quiet.stdout, quiet.stderr
    assert report["source"] == "local"
    [alert] = [a for a in report["firing"] if a["name"] == STORE]
    assert alert["severity"] == "critical"
    assert alert["runbook"] == "docs/runbook/escalation-store-failing.md"
    assert alert["labels"]["job"] == "patient-advocacy-agent"
    assert alert["summary"] == f"Escalation records are not being written on {alert['labels']['instance']}."
    assert public == {"status": "degraded"}  # the public one: the word, no alert names
    assert command.returncode == 1, command.stderr  # something fires
    assert STORE in names(json.loads(command.stdout))
    assert "CRITICAL" in text.stdout and STORE in text.stdout
    assert "docs/runbook/escalation-store-failing.md" in text.stdout


async def test_a_critical_alert_alone_makes_health_say_degraded(tmp_path: Path) -> None:
    """RedactionFailed: nothing else /health looks at is wrong, only the alert fires."""
    settings = server_settings(tmp_path, alerts=TICK)
    port = free_port()
    async with serving(create_app(settings, build_product(settings, phone=False)), port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await asyncio.sleep(0.5)
            before = (await client.get("/health")).json()
            with pytest.raises(ValueError, match="E088"):
                pii.redact("rash " * 250_000)  # a transcript over spaCy's length limit

            async def degraded() -> bool:
                return (await client.get("/health")).json() == {"status": "degraded"}

            await wait_for(degraded, 10, "/health degraded")
            after = await details(client)

    assert before == {"status": "ok"}
    assert names(after["alerts"]) == ["RedactionFailed"]
    assert after["storage"] != "failing" and after["audit_log"] == "ok"  # the alert, nothing else


@pytest.mark.slow
async def test_with_prometheus_configured_the_alerts_are_read_from_its_api(tmp_path: Path) -> None:
    app_port, prom_port = free_port(), free_port()
    prometheus_url = f"http://127.0.0.1:{prom_port}"
    settings, product = store_fault(tmp_path, prometheus_url=prometheus_url)
    server = f"http://127.0.0.1:{app_port}"
    async with serving(create_app(settings, product), app_port):
        async with httpx.AsyncClient(base_url=server, timeout=10) as client:
            async with prometheus(tmp_path, app_port, prom_port) as api:
                assert (await details(client))["alerts"] == {"source": "prometheus", "firing": []}
                await hand_over_one(product)

                async def prometheus_fires() -> bool:
                    return any(a["labels"]["alertname"] == STORE for a in await firing(api))

                await wait_for(prometheus_fires, FIRING_WITHIN_S, f"{STORE} firing in Prometheus")
                report = (await details(client))["alerts"]
                command = await asyncio.to_thread(cli, "--json", ALERTS__PROMETHEUS_URL=prometheus_url)
            # Prometheus gone: the replica's own evaluation answers, and says why.
            fallback = (await details(client))["alerts"]

    assert report["source"] == "prometheus"
    [alert] = [a for a in report["firing"] if a["name"] == STORE]
    assert alert["labels"]["instance"] == f"127.0.0.1:{app_port}"  # Prometheus's label, not ours
    assert alert["summary"] == f"Escalation records are not being written on 127.0.0.1:{app_port}."
    assert command.returncode == 1, command.stderr
    assert json.loads(command.stdout)["source"] == "prometheus"
    assert STORE in names(json.loads(command.stdout))
    assert fallback["source"] == "local"
    assert "prometheus did not answer" in fallback["fallback_reason"]
    assert STORE in names(fallback)
