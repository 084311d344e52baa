"""Where the fired alerts are read: Prometheus or Alertmanager when a setting names one, else this
process's own evaluation.

``ALERTS__PROMETHEUS_URL`` wins over ``ALERTS__ALERTMANAGER_URL``: Prometheus lists every alert
firing on every replica, silenced or not, which is what an incident needs; Alertmanager lists
what it routes, with silences and inhibitions applied. A configured source that does not answer
is not hidden: the local evaluation answers and the report says why (``fallback_reason``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from configs.settings import Settings
from web.alerts.local import LocalAlerts
from web.alerts.records import AlertSource, AlertsReport, FiredAlert


class SourceUnreadable(RuntimeError):
    """The configured source did not answer, or not with alerts (the message says which)."""


def _moment(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def from_prometheus(body: Any) -> list[FiredAlert]:
    """The firing alerts of Prometheus's ``GET /api/v1/alerts`` (pending ones left out)."""
    return [
        FiredAlert.from_labels(alert["labels"], alert.get("annotations", {}), _moment(alert.get("activeAt")))
        for alert in body["data"]["alerts"]
        if alert.get("state") == "firing"
    ]


def from_alertmanager(body: Any) -> list[FiredAlert]:
    """The active alerts of Alertmanager's ``GET /api/v2/alerts`` (silenced ones left out by the query)."""
    return [
        FiredAlert.from_labels(alert["labels"], alert.get("annotations", {}), _moment(alert.get("startsAt")))
        for alert in body
        if alert.get("status", {}).get("state", "active") == "active"
    ]


async def read_remote(settings: Settings) -> tuple[AlertSource, list[FiredAlert]] | None:
    """The configured source's firing alerts; None when none is configured."""
    config = settings.alerts
    if config.prometheus_url:
        source, url, params = AlertSource.PROMETHEUS, config.prometheus_url.rstrip("/") + "/api/v1/alerts", {}
        parse = from_prometheus
    elif config.alertmanager_url:
        source, url = AlertSource.ALERTMANAGER, config.alertmanager_url.rstrip("/") + "/api/v2/alerts"
        params = {"active": "true", "silenced": "false", "inhibited": "false"}
        parse = from_alertmanager
    else:
        return None
    try:
        async with httpx.AsyncClient(timeout=config.read_timeout_s) as client:
            response = await client.get(url, params=params)
            response.raise_for_status()
            return source, parse(response.json())
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        # The URL may carry credentials: name the source and the kind of failure, never the URL.
        raise SourceUnreadable(f"{source.value} did not answer with alerts ({type(exc).__name__})") from None


async def fired_alerts(settings: Settings, local: LocalAlerts) -> AlertsReport:
    """The alerts firing, from the configured source or, without one (or when it fails), ``local``."""
    try:
        remote = await read_remote(settings)
    except SourceUnreadable as exc:
        return local.report(fallback_reason=str(exc))
    if remote is None:
        return local.report()
    source, firing = remote
    return AlertsReport(source, firing)
