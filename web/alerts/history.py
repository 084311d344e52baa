"""The samples of each series over time: what Prometheus's storage keeps, for this process alone.

The local evaluation (``web/alerts/local.py``) records the app's own metrics here at every tick,
as a scrape would, and the rules read windows of it (``increase(x[10m])``). A series that was in
the previous scrape and is not in this one gets a stale marker, as Prometheus writes one: from
then on an instant read does not see it (a phone bridge stopped on purpose drops its
``sip_bridge_up`` and must not look "down"). Samples older than a metric's longest window are
dropped, so the memory is bounded by the rules, not by the uptime.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs, "__name__" included
STALE = None  # a stale marker's value: the series ended here
LOOKBACK_S = 300.0  # how far back an instant read looks for a series' latest sample (Prometheus's 5m)


def labels_of(name: str, labels: Mapping[str, str]) -> Labels:
    return tuple(sorted({**labels, "__name__": name}.items()))


@dataclass
class Point:
    t: float  # seconds (Unix time in the app, minutes of made-up scrapes in a rules test)
    value: float | None  # None: a stale marker


class History:
    """Series by metric name, each a list of points in time order."""

    def __init__(self, retention_s: Mapping[str, float] | None = None, default_retention_s: float = 3600.0):
        self._series: dict[str, dict[Labels, list[Point]]] = {}
        self._retention = dict(retention_s or {})
        self._default_retention = default_retention_s
        self._scraped: dict[str, set[Labels]] = {}  # per scrape source: the series it last had

    def add(self, labels: Labels, t: float, value: float | None) -> None:
        name = dict(labels)["__name__"]
        points = self._series.setdefault(name, {}).setdefault(labels, [])
        if points and points[-1].t == t:
            points[-1] = Point(t, value)  # the same moment written again: the last value stands
        elif not points or points[-1].t < t:
            points.append(Point(t, value))  # (an older sample than the last is ignored, as Prometheus does)

    def scrape(self, source: str, t: float, samples: Iterable[tuple[Labels, float]]) -> None:
        """One scrape of ``source``: its samples at ``t``, a stale marker for each series it no
        longer has, then what fell out of every window is dropped."""
        seen: set[Labels] = set()
        for labels, value in samples:
            self.add(labels, t, value)
            seen.add(labels)
        for gone in self._scraped.get(source, set()) - seen:
            self.add(gone, t, STALE)
        self._scraped[source] = seen
        self.prune(t)

    def prune(self, now: float) -> None:
        for name, series in self._series.items():
            keep_after = now - self._retention.get(name, self._default_retention)
            for labels in list(series):
                points = [p for p in series[labels] if p.t >= keep_after]
                if any(p.value is not STALE for p in points):
                    series[labels] = points
                else:
                    del series[labels]  # nothing left in any window

    def series(self, name: str | None) -> Iterable[tuple[Labels, list[Point]]]:
        if name is not None:
            return list(self._series.get(name, {}).items())
        return [item for series in self._series.values() for item in series.items()]
