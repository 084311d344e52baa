"""``python -m web.alerts [--json] [--server URL]``: the alerts firing now, for an operator in an
incident (docs/runbook.md, "Fired alerts").

Read from Prometheus (``ALERTS__PROMETHEUS_URL``) or Alertmanager (``ALERTS__ALERTMANAGER_URL``)
when one is configured; otherwise, or when it does not answer, from the running server's own
evaluation, through its ``/health/details`` (``MONITORING_TOKEN`` as the bearer token): this
command's process has no metrics of its own to evaluate.

Exit status: 0 nothing is firing, 1 something is, 2 the alerts could not be read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import httpx

from configs.settings import ConfigError, Settings, load_settings
from web.alerts.records import AlertsReport
from web.alerts.sources import SourceUnreadable, read_remote

NOTHING, FIRING, UNREADABLE = 0, 1, 2


def default_server(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


async def _from_server(settings: Settings, server: str, fallback_reason: str | None) -> AlertsReport:
    token = settings.monitoring_token.get_secret_value() if settings.monitoring_token else ""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=settings.alerts.read_timeout_s + 2) as client:
        response = await client.get(server.rstrip("/") + "/health/details", headers=headers)
    if response.status_code == 401:
        raise SourceUnreadable("the server wants MONITORING_TOKEN (the bearer token of /health/details)")
    response.raise_for_status()
    report = AlertsReport.from_json(response.json()["alerts"])
    if fallback_reason and not report.fallback_reason:
        return AlertsReport(report.source, report.firing, fallback_reason, report.not_evaluated)
    return report


async def read(settings: Settings, server: str) -> AlertsReport:
    fallback_reason = None
    try:
        remote = await read_remote(settings)
        if remote is not None:
            return AlertsReport(*remote)
    except SourceUnreadable as exc:
        fallback_reason = str(exc)
    try:
        return await _from_server(settings, server, fallback_reason)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise SourceUnreadable(
            f"the server at {server} did not answer with alerts ({type(exc).__name__})"
        ) from None


def table(report: AlertsReport) -> str:
    lines = [f"source: {report.source.value}"]
    if report.fallback_reason:
        lines.append(f"(instead of the configured source: {report.fallback_reason})")
    if report.not_evaluated:
        lines.append(f"rules this server cannot evaluate: {', '.join(report.not_evaluated)}")
    if not report.firing:
        lines.append("nothing is firing")
    for alert in sorted(report.firing, key=lambda a: (a.severity.value != "critical", a.since)):
        where = " ".join(f"{k}={v}" for k, v in alert.labels.items())
        since = alert.since.isoformat(timespec="seconds")
        lines.append(f"{alert.severity.value.upper():8} {alert.name}  since {since}  {where}".rstrip())
        lines.append(f"         {alert.summary}")
        lines.append(f"         runbook: {alert.runbook}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web.alerts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--server", help="the server whose own evaluation to read (default: HOST:PORT)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return UNREADABLE
    try:
        report = asyncio.run(read(settings, args.server or default_server(settings)))
    except SourceUnreadable as exc:
        print(f"cannot read the alerts: {exc}", file=sys.stderr)
        return UNREADABLE
    print(json.dumps(report.to_json(), indent=2) if args.json else table(report))
    return FIRING if report.firing else NOTHING


if __name__ == "__main__":
    sys.exit(main())
