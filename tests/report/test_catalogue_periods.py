"""The KPI catalogue (config/kpis.yaml and user files) and the reporting windows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.inventory import load_inventory
from exporters.kpi_report.catalogue import default_catalogue, load_catalogues, render_query
from exporters.kpi_report.fleet import fleet_for
from exporters.kpi_report.periods import parse_period

PLAN_TARGETS = {  # Decision 1009/QĐ-UBND (2012), I.2.h (and I.2.đ for satisfaction), read from the plan's text
    "edoc_electronic_share": 0.7, "dms_adoption": 0.9, "email_regular_use": 0.9, "portal_operational": 1.0,
    "portal_content": 1.0, "online_services_level34": 16, "satisfaction": 0.65, "iso9001_certified": 1.0,
}
USER_KPI = """\
kpis:
  - id: lgsp_availability
    name: {vi: Tính sẵn sàng của LGSP, en: LGSP availability}
    aggregation: mean
    expr: avg by (org_id) (avg_over_time(probe_success{service="lgsp"}[$window]))
    coverage: 'probe_success{service="lgsp"}'
    targets:
      internal: {value: 0.99, source: internal}
"""


def test_default_catalogue_covers_the_plan() -> None:
    kpis = {k.id: k for k in load_catalogues([default_catalogue()])}
    for kpi_id, value in PLAN_TARGETS.items():
        plan = kpis[kpi_id].targets.plan
        assert plan is not None and plan.value == value, kpi_id
    assert kpis["email_regular_use"].targets.plan.op == ">"  # "trên 90%": more than 90%
    sections = {k.plan_section for k in kpis.values()}
    assert {"I.2.h", "II.6.a", "II.6.c", "II.6.d", "II.6.e", "II.6.h"} <= sections
    # Successor targets with their rules.
    assert kpis["edoc_electronic_share"].targets.successor.value == 1.0
    assert "942" in kpis["edoc_electronic_share"].targets.successor.source
    assert "1565" in kpis["satisfaction"].targets.successor.source
    assert kpis["wan_packet_loss"].direction == "lower"
    for kpi in kpis.values():
        assert kpi.name.vi != kpi.name.en


def test_target_in_force_follows_the_date() -> None:
    kpi = next(k for k in load_catalogues([default_catalogue()]) if k.id == "satisfaction")
    assert kpi.targets.in_force(dt.date(2015, 6, 30)).value == 0.65
    assert kpi.targets.in_force(dt.date(2025, 6, 30)).value == 0.65
    assert kpi.targets.in_force(dt.date(2026, 10, 31)).value == 0.95


def test_user_catalogue_is_added(tmp_path: Path) -> None:
    extra = tmp_path / "mine.yaml"
    extra.write_text(USER_KPI, encoding="utf-8")
    kpis = load_catalogues([default_catalogue(), extra])
    assert kpis[-1].id == "lgsp_availability"
    query = render_query(kpis[-1].queries()["value"], {"window": "2678400s", "period": "2026-10", "start": "1",
                                                       "end": "2"})
    assert query == 'avg by (org_id) (avg_over_time(probe_success{service="lgsp"}[2678400s]))'


@pytest.mark.parametrize(("text", "message"), [
    pytest.param(USER_KPI.replace("aggregation: mean", "aggregation: ratio_of_sums"), "line 2: kpis[0]: "
                 "aggregation ratio_of_sums needs numerator and denominator", id="ratio without parts"),
    pytest.param(USER_KPI.replace("[$window]", "[$windows]"), "unknown variable $windows", id="unknown variable"),
    pytest.param(USER_KPI.replace("    aggregation: mean\n", "    aggregation: mean\n    colour: red\n"),
                 "line 5: kpis[0].colour: unknown key", id="unknown key"),
    pytest.param(USER_KPI.replace("id: lgsp_availability", "id: wan_availability"),
                 "line 2: kpis[0].id: duplicate KPI id 'wan_availability'", id="duplicate id"),
    pytest.param(USER_KPI.replace("    targets:\n      internal: {value: 0.99, source: internal}\n",
                                  "    targets: {}\n"),
                 "targets needs at least one of plan, successor, internal", id="no target"),
    pytest.param("kpis: [", "invalid YAML", id="bad yaml"),
])
def test_bad_user_catalogue(tmp_path: Path, text: str, message: str) -> None:
    extra = tmp_path / "mine.yaml"
    extra.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_catalogues([default_catalogue(), extra])
    assert str(extra) in info.value.render()
    assert message in info.value.render(), info.value.render()


@pytest.mark.parametrize(("period", "window", "start", "last_day"), [
    ("2026-10", "calendar", "2026-10-01", "2026-10-31"),
    ("2026-10", "15-14", "2026-09-15", "2026-10-14"),
    ("2026-01", "15-14", "2025-12-15", "2026-01-14"),
    ("2024-02", "calendar", "2024-02-01", "2024-02-29"),
])
def test_windows(period: str, window: str, start: str, last_day: str) -> None:
    p = parse_period(period, window, "Asia/Ho_Chi_Minh")  # type: ignore[arg-type]
    assert p.start.isoformat() == f"{start}T00:00:00+07:00"
    assert str(p.last_day) == last_day
    assert p.seconds == ((p.last_day - p.start.date()).days + 1) * 86400


def test_last_period() -> None:
    now = dt.datetime(2026, 11, 16, 6, 0, tzinfo=dt.UTC)
    assert parse_period("last", "15-14", "Asia/Ho_Chi_Minh", now).label == "2026-11"
    assert parse_period("last", "calendar", "Asia/Ho_Chi_Minh", now).label == "2026-10"
    early = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)
    assert parse_period("last", "15-14", "Asia/Ho_Chi_Minh", early).label == "2026-10"


@pytest.mark.parametrize("text", ["2026-13", "26-10", "october", "2026-1"])
def test_bad_period(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_period(text, "calendar", "Asia/Ho_Chi_Minh")


def test_inventory_hierarchy_by_date_and_successors(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("""\
hierarchies:
  - {name: qn-2012, levels: [province, district, commune], until: 2025-06-30}
  - {name: dn-2025, levels: [city, commune], from: 2025-07-01}
offices:
  - {org_id: P, name: Tỉnh, level: province, parent_id: null, hierarchy: qn-2012}
  - {org_id: D, name: Huyện, level: district, parent_id: P, hierarchy: qn-2012}
  - {org_id: C1, name: Xã 1, level: commune, parent_id: D, hierarchy: qn-2012}
  - {org_id: C2, name: Xã 2, level: commune, parent_id: D, hierarchy: qn-2012}
  - {org_id: T, name: Thành phố, level: city, parent_id: null, hierarchy: dn-2025, predecessors: [P]}
  - {org_id: N, name: Xã mới, level: commune, parent_id: T, hierarchy: dn-2025, predecessors: [C1, C2]}
""", encoding="utf-8")
    inventory = load_inventory(path)
    old, new = fleet_for(inventory, dt.date(2025, 6, 30)), fleet_for(inventory, dt.date(2025, 7, 1))
    assert old.hierarchy.levels == ("province", "district", "commune") and len(old.offices) == 4
    assert new.hierarchy.levels == ("city", "commune") and len(new.offices) == 2
    assert [new.resolve(x) for x in ("C1", "C2", "P", "D", "N", "X")] == ["N", "N", "T", None, "N", None]
    assert old.resolve("C1") == "C1"
