"""This process's own evaluation of the alert rules, over its own metrics: the alerts a replica
can tell without a Prometheus (a single box, or Prometheus itself down).

Every ``ALERTS__EVALUATION_INTERVAL_S`` the app's prometheus_client registry is read as a scrape
would read ``/metrics`` (only the metrics the rules read are kept, each for its longest window)
and the rules of ``ALERTS__RULE_FILES`` are evaluated over it (``web/alerts/rules.py``). Rules
that read what only Prometheus has (``up``: a replica that does not answer) never fire here; a
replica cannot see itself down. The evaluation runs on the event loop: a few hundred samples and
a dozen rules, well under a millisecond of work per tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

from prometheus_client import REGISTRY, CollectorRegistry

from configs.settings import Settings
from web.alerts.history import LOOKBACK_S, History, labels_of
from web.alerts.records import AlertSource, AlertsReport, FiredAlert, Severity
from web.alerts.rules import RuleEngine, Rules

log = logging.getLogger(__name__)

# The scrape job the rules expect (configs/prometheus/alerts.yml): every sample read here gets it,
# and an ``instance`` of this host's name and port, the labels Prometheus would add (in compose the
# same ones: app-1:8000), so the rules and their summaries read the same.
JOB = "patient-advocacy-agent"


class LocalAlerts:
    def __init__(self, settings: Settings, registry: CollectorRegistry = REGISTRY) -> None:
        self.interval_s = settings.alerts.evaluation_interval_s
        self.rules = Rules.load([settings.path(path) for path in settings.alerts.rule_files])
        for name, why in self.rules.unsupported.items():
            log.warning("alert rule %s is not evaluated by the app: %s", name, why)
        windows = self.rules.longest_windows()
        # Each metric kept for its longest window, plus the lookback of an instant read and a tick.
        self._history = History({name: span + LOOKBACK_S + self.interval_s for name, span in windows.items()})
        self._wanted = set(windows)
        self._engine = RuleEngine(self.rules, self._history)
        self._registry = registry
        self._target = {"job": JOB, "instance": f"{socket.gethostname()}:{settings.port}"}
        self._firing: list[FiredAlert] = []
        self._task: asyncio.Task[None] | None = None

    def tick(self, now: float | None = None) -> list[FiredAlert]:
        """Read the metrics once and evaluate every rule; the alerts firing now."""
        now = time.time() if now is None else now
        samples = [
            (labels_of(sample.name, {**sample.labels, **self._target}), float(sample.value))
            for family in self._registry.collect()
            for sample in family.samples
            if sample.name in self._wanted
        ]
        self._history.scrape("registry", now, samples)
        self._firing = self._engine.evaluate(now)
        return self._firing

    @property
    def firing(self) -> list[FiredAlert]:
        return list(self._firing)

    def critical_firing(self) -> bool:
        return any(alert.severity is Severity.CRITICAL for alert in self._firing)

    def report(self, fallback_reason: str | None = None) -> AlertsReport:
        return AlertsReport(AlertSource.LOCAL, self.firing, fallback_reason, sorted(self.rules.unsupported))

    async def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # an evaluation that fails must not end the next ones
                log.exception("local alert evaluation failed")
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="local-alerts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
