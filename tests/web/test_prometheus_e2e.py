"""End to end: a real Prometheus (Debian's) scrapes the running server and sees the alert fire.

The server is the product as ``python -m web`` builds it (``create_app`` around ``build_product``),
served by uvicorn on 127.0.0.1 with its escalation folder replaced by a file, so every record write
fails: the fault ``docs/runbook.md`` calls "an escalation that could not be stored". Prometheus
scrapes its ``/metrics`` every second and evaluates the real rules of
``configs/prometheus/alerts.yml``, copied with every ``for:`` set to 0 s (the only change) so that
the test does not wait minutes. Before the fault nothing fires; after one escalation is added to the
server's clinician queue (as a session hands one over), ``EscalationStoreFailing`` is firing in
Prometheus's HTTP API (``/api/v1/alerts``) with its runbook page. The server and Prometheus are
started by ``tests/web/monitoring.py`` (shared with ``test_alerts.py``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.policy import Urgency
from tests.web.monitoring import FIRING_WITHIN_S, firing, free_port, prometheus, serving, wait_for
from tests.web.test_clinician_routes import escalation
from tests.web.test_faults import server_settings
from web.app import create_app
from web.product import build_product

ALERT = "EscalationStoreFailing"


@pytest.mark.slow
async def test_prometheus_sees_the_store_failure_alert_fire_on_the_running_server(tmp_path: Path) -> None:
    (tmp_path / "escalations").write_text("")  # the folder is a file: every record write fails
    settings = server_settings(tmp_path)
    product = build_product(settings, phone=False)
    app_port, prom_port = free_port(), free_port()
    async with (
        serving(create_app(settings, product), app_port),
        prometheus(tmp_path, app_port, prom_port) as client,
    ):
        await asyncio.sleep(2)  # two more evaluations of the rules on healthy data
        assert [a["labels"]["alertname"] for a in await firing(client)] == []  # nothing fires when healthy

        await product.queue.add(escalation("room-a", Urgency.EMERGENCY))  # a session hands one over
        await product.queue.flush(5.0)

        async def store_alert_firing() -> bool:
            return any(a["labels"]["alertname"] == ALERT for a in await firing(client))

        await wait_for(store_alert_firing, FIRING_WITHIN_S, f"{ALERT} firing")
        [alert] = [a for a in await firing(client) if a["labels"]["alertname"] == ALERT]

    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["instance"] == f"127.0.0.1:{app_port}"
    assert alert["annotations"]["runbook"] == "docs/runbook/escalation-store-failing.md"
    assert (
        alert["annotations"]["summary"]
        == f"Escalation records are not being written on 127.0.0.1:{app_port}."
    )
