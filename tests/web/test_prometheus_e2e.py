"""End to end: a real Prometheus (Debian's) scrapes the running server and sees the alert fire.

The server is the product as ``python -m web`` builds it (``create_app`` around ``build_product``),
served by uvicorn on 127.0.0.1 with its escalation folder replaced by a file, so every record write
fails: the fault ``docs/runbook.md`` calls "an escalation that could not be stored". Prometheus
scrapes its ``/metrics`` every second and evaluates the real rules of
``configs/prometheus/alerts.yml``, copied with every ``for:`` set to 0 s (the only change) so that
the test does not wait minutes. Before the fault nothing fires; after one escalation is added to the
server's clinician queue (as a session hands one over), ``EscalationStoreFailing`` is firing in
Prometheus's HTTP API (``/api/v1/alerts``) with its runbook page.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml

from agent.policy import Urgency
from tests.configs.test_alert_rules import ALERTS
from tests.debian_tools import debian_tool
from tests.web.test_clinician_routes import escalation
from tests.web.test_faults import server_settings
from web.app import create_app
from web.product import build_product

ALERT = "EscalationStoreFailing"
FIRING_WITHIN_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prometheus_binary() -> str:
    return debian_tool("prometheus", "prometheus")


def immediate_rules(target: Path) -> Path:
    """The real alert rules with ``for: 0s``: nothing else changed."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "0s"
    target.write_text(yaml.safe_dump(rules))
    return target


def prometheus_config(tmp_path: Path, app_port: int) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(immediate_rules(tmp_path / "alerts.yml"))],
        "scrape_configs": [
            {
                "job_name": "patient-advocacy-agent",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{app_port}"]}],
            }
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


async def firing(client: httpx.AsyncClient) -> list[dict]:
    alerts = (await client.get("/api/v1/alerts")).json()["data"]["alerts"]
    return [alert for alert in alerts if alert["state"] == "firing"]


async def wait_for(check, within_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        try:
            if await check():
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"not within {within_s:.0f} s: {what}")


@pytest.mark.slow
async def test_prometheus_sees_the_store_failure_alert_fire_on_the_running_server(tmp_path: Path) -> None:
    binary = prometheus_binary()
    (tmp_path / "escalations").write_text("")  # the folder is a file: every record write fails
    settings = server_settings(tmp_path)
    product = build_product(settings, phone=False)
    app_port, prom_port = free_port(), free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, product), host="127.0.0.1", port=app_port, log_config=None)
    )
    serving = asyncio.create_task(server.serve())
    prometheus = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={prometheus_config(tmp_path, app_port)}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:

        async def started() -> bool:
            if serving.done():
                serving.result()  # its error, if it failed to start
                raise AssertionError("the server stopped before it started")
            return server.started

        await wait_for(started, 180, "the server started")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{prom_port}", timeout=5) as client:

            async def scraped() -> bool:
                query = {"query": 'escalation_store_failing{job="patient-advocacy-agent"}'}
                result = (await client.get("/api/v1/query", params=query)).json()["data"]["result"]
                return bool(result) and result[0]["value"][1] == "0"

            await wait_for(scraped, FIRING_WITHIN_S, "Prometheus scraped the healthy server")
            await asyncio.sleep(2)  # two more evaluations of the rules on healthy data
            assert [
                a["labels"]["alertname"] for a in await firing(client)
            ] == []  # nothing fires when healthy

            await product.queue.add(escalation("room-a", Urgency.EMERGENCY))  # a session hands one over
            await product.queue.flush(5.0)

            async def store_alert_firing() -> bool:
                return any(a["labels"]["alertname"] == ALERT for a in await firing(client))

            await wait_for(store_alert_firing, FIRING_WITHIN_S, f"{ALERT} firing")
            [alert] = [a for a in await firing(client) if a["labels"]["alertname"] == ALERT]
    finally:
        prometheus.terminate()
        await asyncio.wait_for(prometheus.wait(), 30)
        server.should_exit = True
        await asyncio.wait_for(serving, 30)

    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["instance"] == f"127.0.0.1:{app_port}"
    assert alert["annotations"]["runbook"] == "docs/runbook/escalation-store-failing.md"
    assert (
        alert["annotations"]["summary"]
        == f"Escalation records are not being written on 127.0.0.1:{app_port}."
    )
