"""Evaluate the KPI catalogue for one period: per office, per level and province-wide, with trend and coverage."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from exporters.kpi_report.catalogue import Kpi, Target, render_query
from exporters.kpi_report.fleet import Fleet, Hierarchy, Office, fleet_for
from exporters.kpi_report.outages import Outage, find_outages
from exporters.kpi_report.periods import Period
from exporters.kpi_report.store import Store, gather_all

if TYPE_CHECKING:
    from agent.inventory import Inventory

Status = Literal["met", "not_met", "no_data", "no_target"]
Scope = Literal["province", "level", "office"]
PROVINCE = "all"  # the id of the province-wide row (a level may be called "province")
_LEVEL_ORDER = ("province", "city", "district", "commune")


@dataclass
class Row:
    """One KPI for one office, one level or the whole province, in the report's period."""

    scope: Scope
    id: str
    name: str
    level: str | None
    value: float | None
    target: float | None
    status: Status
    previous: float | None
    coverage: float | None
    numerator: float | None = None
    denominator: float | None = None
    offices: int = 1
    offices_with_data: int = 0

    @property
    def change(self) -> float | None:
        """value - previous; None unless both exist."""
        return None if self.value is None or self.previous is None else self.value - self.previous


@dataclass
class KpiResult:
    """A KPI's rows (province, levels, offices) and its trend over the last periods."""

    kpi: Kpi
    target: Target | None
    rows: list[Row]
    trend: dict[str, list[float | None]]
    """"all" (province-wide) or a level -> values, oldest period first (Report.trend_periods)"""
    unmatched: list[str] = field(default_factory=list)


@dataclass
class Report:
    """Everything a renderer needs."""

    source: str
    period: Period
    hierarchy: Hierarchy
    offices: list[Office]
    results: list[KpiResult]
    outages: list[Outage]
    trend_periods: list[str]
    generated_at: dt.datetime
    outage_resolution: float
    warnings: list[str] = field(default_factory=list)


async def build_report(store: Store, kpis: list[Kpi], period: Period, *, inventory: Inventory | None,
                       trend: int = 6, outage_resolution: float = 300.0,
                       progress: Callable[[str], None] = lambda _: None) -> Report:
    """Query the store and compute every KPI; raises StoreError when the store fails."""
    if inventory is not None:
        fleet = fleet_for(inventory, period.last_day)
    else:
        fleet = await _fleet_from_office_info(store, period)
    progress(f"period {period.describe()}, hierarchy {fleet.hierarchy.name} "
             f"({' > '.join(fleet.hierarchy.levels)}), {len(fleet.offices)} offices")
    periods = [period.shifted(-i) for i in range(max(trend, 2) - 1, -1, -1)]
    done = 0

    async def one(kpi: Kpi) -> KpiResult:
        nonlocal done
        result = await _evaluate(store, kpi, fleet, periods)
        done += 1
        progress(f"[{done}/{len(kpis)}] {kpi.id}")
        return result

    outages_task = asyncio.ensure_future(find_outages(store, period, fleet.resolve, outage_resolution))
    try:
        results = await gather_all(*(one(kpi) for kpi in kpis))
        outages = await outages_task
    finally:
        outages_task.cancel()
    progress(f"outages: {len(outages)} found; {store.queries} queries")
    warnings = [f"{r.kpi.id}: data for ids not in the {fleet.hierarchy.name} inventory (ignored): "
                + ", ".join(r.unmatched[:10]) + (" ..." if len(r.unmatched) > 10 else "")
                for r in results if r.unmatched]
    return Report(store.base_url, period, fleet.hierarchy, fleet.offices, list(results), outages,
                  [p.label for p in periods], dt.datetime.now(period.tz), outage_resolution, warnings)


async def _evaluate(store: Store, kpi: Kpi, fleet: Fleet, periods: list[Period]) -> KpiResult:
    offices = [o for o in fleet.offices if kpi.applies_to(fleet.hierarchy.name, o.level)]
    per_period = await gather_all(*(_office_cells(store, kpi, fleet, p) for p in periods))
    coverage = await _coverage(store, kpi, fleet, periods[-1])
    unmatched = sorted(set().union(*(u for _, u in per_period)))
    cells = [c for c, _ in per_period]
    current, previous = cells[-1], cells[-2]
    target = kpi.targets.in_force(periods[-1].last_day)
    rows: list[Row] = []
    groups: list[tuple[Scope, str, list[Office]]] = [("province", PROVINCE, offices)]
    levels = [lvl for lvl in fleet.hierarchy.levels if any(o.level == lvl for o in offices)]
    groups += [("level", lvl, [o for o in offices if o.level == lvl]) for lvl in levels]
    trend: dict[str, list[float | None]] = {}
    for scope, gid, members in groups:
        value, num, den, with_data = _group(kpi, current, members)
        prev = _group(kpi, previous, members)[0]
        level = None if scope == "province" else gid
        cov = [coverage.get(o.org_id, 0.0) for o in members]
        rows.append(Row(scope, gid, gid, level, value, _goal(target, level), _status(target, value, level), prev,
                        sum(cov) / len(cov) if cov else None, num, den, len(members), with_data))
        trend[gid] = [_group(kpi, c, members)[0] for c in cells]
    for office in offices:
        cell = current.get(office.org_id)
        value = cell.value if cell else None
        prev_cell = previous.get(office.org_id)
        rows.append(Row("office", office.org_id, office.name, office.level, value, _goal(target, office.level),
                        _status(target, value, office.level), prev_cell.value if prev_cell else None,
                        coverage.get(office.org_id, 0.0), cell.numerator if cell and kpi.numerator else None,
                        cell.denominator if cell else None, 1, int(value is not None)))
    return KpiResult(kpi, target, rows, trend, unmatched)


async def _office_cells(store: Store, kpi: Kpi, fleet: Fleet, period: Period) -> tuple[dict[str, _Cell], set[str]]:
    """Office id -> cell for one period, predecessors rolled up; and the ids no office claims."""
    values = _template_values(period)
    at = period.end.timestamp() - 0.001  # the window is [start, end): a sample at `end` is the next period's
    queries = kpi.queries()
    answers = await gather_all(*(store.instant(render_query(q, values), at) for q in queries.values()))
    cells: dict[str, _Cell] = defaultdict(_Cell)
    unmatched: set[str] = set()
    for role, series in zip(queries, answers, strict=True):
        for labels, number in series:
            raw_id = labels.get(kpi.office_label)
            if raw_id is None:
                continue
            office = fleet.resolve(raw_id)
            if office is None:
                unmatched.add(raw_id)
                continue
            cell = cells[office]
            if role == "numerator":
                cell.numerator += number
            elif role == "denominator":
                cell.denominator = (cell.denominator or 0.0) + number
            else:
                cell.values.append(number)
    for cell in cells.values():
        if kpi.aggregation == "ratio_of_sums":
            den = cell.denominator
            cell.value = cell.numerator / den if den else None
        elif cell.values:
            total = sum(cell.values)
            cell.value = total if kpi.aggregation == "sum" else total / len(cell.values)
    return dict(cells), unmatched


async def _coverage(store: Store, kpi: Kpi, fleet: Fleet, period: Period) -> dict[str, float]:
    """Office id -> share of the window's hours in which the KPI's coverage series had a sample."""
    label = kpi.office_label
    selector = render_query(kpi.coverage, _template_values(period))
    hours = period.seconds / 3600
    # Hour buckets [t - 1h, t) at t = start + 1h .. end, the same in Prometheus 2 (closed ranges) and VictoriaMetrics
    # (left-open): the inner range is shifted by 1 ms, the outer one is 1 ms short of the window.
    query = (f"count_over_time((max by ({label}) (count_over_time({selector}[1h] offset 1ms)))"
             f"[{period.seconds * 1000 - 1}ms:1h])")
    counts: dict[str, float] = defaultdict(float)
    for labels, number in await store.instant(query, period.end.timestamp()):
        office = fleet.resolve(labels.get(label, ""))
        if office is not None:
            counts[office] = max(counts[office], number)
    return {office: min(1.0, count / hours) for office, count in counts.items()}


def _group(kpi: Kpi, cells: dict[str, _Cell], members: list[Office]) -> tuple[float | None, float | None,
                                                                              float | None, int]:
    """(value, numerator, denominator, offices with data) of a group of offices."""
    with_data = [cells[o.org_id] for o in members if o.org_id in cells and cells[o.org_id].value is not None]
    if not with_data:
        return None, None, None, 0
    if kpi.aggregation == "ratio_of_sums":
        num = sum(c.numerator for c in with_data)
        den = sum(c.denominator or 0.0 for c in with_data)
        return (num / den if den else None), num, den, len(with_data)
    values = [c.value for c in with_data if c.value is not None]
    total = sum(values)
    return (total if kpi.aggregation == "sum" else total / len(values)), None, None, len(with_data)


def _goal(target: Target | None, level: str | None) -> float | None:
    return None if target is None else target.value_for(level)


def _status(target: Target | None, value: float | None, level: str | None) -> Status:
    if value is None:
        return "no_data"
    met = None if target is None else target.met(value, level)
    if met is None:
        return "no_target"
    return "met" if met else "not_met"


def _template_values(period: Period) -> dict[str, str]:
    return {"window": f"{period.seconds}s", "period": period.label,
            "start": f"{period.start.timestamp():.0f}", "end": f"{period.end.timestamp():.0f}"}


async def _fleet_from_office_info(store: Store, period: Period) -> Fleet:
    """Without an inventory: the offices whose agents reported egov_office_info during the window."""
    query = (f"max by (org_id, name, level, parent_id, hierarchy) "
             f"(last_over_time(egov_office_info[{period.seconds}s]))")
    offices: dict[str, Office] = {}
    for labels, _ in await store.instant(query, period.end.timestamp() - 0.001):
        org_id = labels.get("org_id")
        if org_id:
            offices[org_id] = Office(org_id, labels.get("name") or org_id, labels.get("level") or "unknown",
                                     labels.get("hierarchy") or "", labels.get("parent_id") or None)
    names = sorted({o.hierarchy for o in offices.values()}) or ["(egov_office_info)"]
    found = {o.level for o in offices.values()}
    levels = tuple([lvl for lvl in _LEVEL_ORDER if lvl in found] + sorted(found - set(_LEVEL_ORDER)))
    return Fleet(Hierarchy("+".join(names), levels), sorted(offices.values(), key=lambda o: o.org_id))


@dataclass
class _Cell:
    value: float | None = None
    numerator: float = 0.0
    denominator: float | None = None
    values: list[float] = field(default_factory=list)
