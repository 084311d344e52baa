"""What a fired alert is, wherever it was read: the same record from Prometheus, Alertmanager or
this process's own evaluation, so the CLI and ``/health/details`` print one shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """The ``severity`` label of the rules: a critical one makes ``/health`` say degraded."""

    CRITICAL = "critical"
    WARNING = "warning"
    OTHER = "other"  # a rule outside ours with another word (or none)

    @classmethod
    def of(cls, label: str | None) -> Severity:
        try:
            return cls(label or "")
        except ValueError:
            return cls.OTHER


class AlertSource(StrEnum):
    PROMETHEUS = "prometheus"  # ALERTS__PROMETHEUS_URL: /api/v1/alerts, every replica's
    ALERTMANAGER = "alertmanager"  # ALERTS__ALERTMANAGER_URL: /api/v2/alerts, silences applied
    LOCAL = "local"  # this process's evaluation of the same rules over its own metrics


# Labels that only repeat what the record says, left out of ``labels``.
_KNOWN = {"alertname", "severity"}


@dataclass(frozen=True)
class FiredAlert:
    """One alert firing. ``labels`` tell its instances apart (stage, backend, instance, port):
    never a patient's data, which no metric carries."""

    name: str
    severity: Severity
    runbook: str  # the page under docs/runbook/ the rule names
    since: datetime  # when its condition first held (Prometheus's activeAt, Alertmanager's startsAt)
    summary: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_labels(cls, labels: dict[str, str], annotations: dict[str, str], since: datetime) -> FiredAlert:
        return cls(
            name=labels.get("alertname", "?"),
            severity=Severity.of(labels.get("severity")),
            runbook=annotations.get("runbook", ""),
            since=since,
            summary=annotations.get("summary", ""),
            labels={k: v for k, v in sorted(labels.items()) if k not in _KNOWN},
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FiredAlert:
        """Back from ``to_json`` (the CLI reads a server's ``/health/details``)."""
        return cls(
            name=str(data["name"]),
            severity=Severity.of(data.get("severity")),
            runbook=str(data.get("runbook", "")),
            since=datetime.fromisoformat(str(data["since"])),
            summary=str(data.get("summary", "")),
            labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "severity": self.severity.value,
            "runbook": self.runbook,
            "since": self.since.isoformat(timespec="seconds"),
            "summary": self.summary,
            "labels": self.labels,
        }


@dataclass(frozen=True)
class AlertsReport:
    """The alerts firing as read from ``source``; ``fallback_reason`` when a configured source
    could not be read and this process's own evaluation answered instead."""

    source: AlertSource
    firing: list[FiredAlert]
    fallback_reason: str | None = None
    not_evaluated: list[str] = field(default_factory=list)  # rules the local evaluation cannot run

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertsReport:
        return cls(
            AlertSource(data["source"]),
            [FiredAlert.from_json(alert) for alert in data["firing"]],
            data.get("fallback_reason"),
            list(data.get("not_evaluated", [])),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source.value,
            "firing": [alert.to_json() for alert in self.firing],
        }
        if self.fallback_reason:
            out["fallback_reason"] = self.fallback_reason
        if self.not_evaluated:
            out["not_evaluated"] = self.not_evaluated
        return out
