"""Outages of a period from probe_success and up: contiguous failed buckets of --outage-resolution.

A bucket failed when a sample in it failed, or when the latest sample of the last three buckets did: a check sampled
less often than the buckets stays down until its next sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exporters.kpi_report.periods import Period
from exporters.kpi_report.store import Labels, Store, gather_all

MAX_POINTS = 10_000  # Prometheus refuses a range query of more than 11,000 points per series
LOOKBACK_BUCKETS = 3
# No aggregation in PromQL: a `max by` at every step costs the store ten times more than the filter alone; copies of
# a series (pulled and pushed) are merged here by KEYS.
QUERIES = {
    "probe": "min_over_time(probe_success[{r}]) == 0 or last_over_time(probe_success[{lookback}]) == 0",
    "agent": "min_over_time(up[{r}]) == 0 or last_over_time(up[{lookback}]) == 0",
}
KEYS = {"probe": ("org_id", "service", "check", "target"), "agent": ("org_id", "job", "instance")}


@dataclass(frozen=True, slots=True)
class Outage:
    """A run of failed buckets of one check (or one scrape target): [start, end) in Unix seconds."""

    office: str | None
    org_id: str
    service: str
    check: str
    target: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.end - self.start


async def find_outages(store: Store, period: Period, resolve: Callable[[str], str | None],
                       resolution: float) -> list[Outage]:
    """Every outage inside the period's window, longest first; resolution is the bucket length in seconds."""
    start, end = period.start.timestamp(), period.end.timestamp()
    steps = int((end - start) // resolution)
    chunks = [(i, min(i + MAX_POINTS, steps)) for i in range(0, steps, MAX_POINTS)]
    r = f"{round(resolution * 1000)}ms"
    lookback = f"{round(resolution * 1000 * LOOKBACK_BUCKETS)}ms"
    found: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
    # A bucket (t - r, t] is evaluated at t = start + k*r - 1 ms: it holds the samples of [start + (k-1)r, start + kr).
    answers = await gather_all(*(
        store.range(query.format(r=r, lookback=lookback), start + (a + 1) * resolution - 0.001,
                    start + b * resolution - 0.001, resolution)
        for query in QUERIES.values() for a, b in chunks))
    kinds = [kind for kind in QUERIES for _ in chunks]
    for kind, series in zip(kinds, answers, strict=True):
        for labels, points in series:
            key = (kind, tuple((name, labels.get(name, "")) for name in KEYS[kind]))
            found.setdefault(key, []).extend(t for t, _ in points)
    outages = []
    for (kind, items), stamps in found.items():
        labels = dict(items)
        for first, last in _runs(sorted(set(stamps)), resolution):
            outages.append(_outage(kind, labels, first - resolution + 0.001, last + 0.001, resolve))
    outages.sort(key=lambda o: (-o.seconds, o.org_id, o.start))
    return outages


def _runs(stamps: list[float], step: float) -> list[tuple[float, float]]:
    runs: list[tuple[float, float]] = []
    for stamp in stamps:
        if runs and stamp - runs[-1][1] <= step * 1.5:
            runs[-1] = (runs[-1][0], stamp)
        else:
            runs.append((stamp, stamp))
    return runs


def _outage(kind: str, labels: Labels, start: float, end: float, resolve: Callable[[str], str | None]) -> Outage:
    org_id = labels.get("org_id", "")
    office = resolve(org_id) if org_id else None
    if kind == "agent":
        return Outage(office, org_id, "agent", labels.get("job", ""), labels.get("instance", ""), start, end)
    return Outage(office, org_id, labels.get("service", ""), labels.get("check", ""), labels.get("target", ""),
                  start, end)
