"""Helpers of the monitoring tests: the server on a real port, and Debian's Prometheus scraping it.

Shared by ``test_prometheus_e2e.py`` (Prometheus sees the alert fire) and ``test_alerts.py`` (the
app reads it back from Prometheus's API). Prometheus evaluates the real rules of
``configs/prometheus/alerts.yml`` with every ``for:`` set to 0 s (the only change), every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import uvicorn
import yaml
from starlette.applications import Starlette

from tests.configs.test_alert_rules import ALERTS
from tests.debian_tools import debian_tool

FIRING_WITHIN_S = 60.0
JOB = "patient-advocacy-agent"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
                "job_name": JOB,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{app_port}"]}],
            }
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


async def wait_for(check: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
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


@contextlib.asynccontextmanager
async def serving(app: Starlette, port: int) -> AsyncIterator[None]:
    """``app`` served by uvicorn on 127.0.0.1:``port`` until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    try:

        async def started() -> bool:
            if task.done():
                task.result()  # its error, if it failed to start
                raise AssertionError("the server stopped before it started")
            return server.started

        await wait_for(started, 180, "the server started")
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, app_port: int, port: int) -> AsyncIterator[httpx.AsyncClient]:
    """Debian's Prometheus scraping the app on ``app_port``; a client of its HTTP API."""
    process = await asyncio.create_subprocess_exec(
        debian_tool("prometheus", "prometheus"),
        f"--config.file={prometheus_config(tmp_path, app_port)}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            async def scraped() -> bool:
                query = {"query": f'escalation_store_failing{{job="{JOB}"}}'}
                result = (await client.get("/api/v1/query", params=query)).json()["data"]["result"]
                return bool(result) and result[0]["value"][1] == "0"

            await wait_for(scraped, FIRING_WITHIN_S, "Prometheus scraped the healthy server")
            yield client
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def firing(client: httpx.AsyncClient) -> list[dict]:
    alerts = (await client.get("/api/v1/alerts")).json()["data"]["alerts"]
    return [alert for alert in alerts if alert["state"] == "firing"]
