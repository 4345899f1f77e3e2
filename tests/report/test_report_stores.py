"""`egov-agent kpi-report` against real Prometheus and VictoriaMetrics holding synthetic months of a fleet whose
KPI values, coverage and outages tests/fakes/fleet_data.py computes on its own from the samples."""

from __future__ import annotations

import csv
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes.fleet_data import TZ, Fleet, calendar_window

pytestmark = pytest.mark.slow
RESOLUTION = 1800  # the fleet's probe interval: outage buckets hold one sample each


def run_report(source: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it."""
    return subprocess.run([sys.executable, "-m", "agent", "kpi-report", "--source", source, "--out", str(out), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def window_15_14(period: str) -> tuple[dt.datetime, dt.datetime]:
    year, month = int(period[:4]), int(period[5:])
    prev_year, prev_month = (year - 1, 12) if month == 1 else (year, month - 1)
    return dt.datetime(prev_year, prev_month, 15, tzinfo=TZ), dt.datetime(year, month, 15, tzinfo=TZ)


def previous_month(period: str) -> str:
    year, month = int(period[:4]), int(period[5:])
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-9)


def check_values(report: dict[str, Any], expected: dict[str, dict], field: str) -> list[str]:
    """Every row's `field` (value or previous) against the expected figures; returns the mismatches."""
    problems = []
    assert {k["id"] for k in report["kpis"]} == set(expected)
    for kpi in report["kpis"]:
        exp = expected[kpi["id"]]
        seen_offices = {r["id"] for r in kpi["rows"] if r["scope"] == "office"}
        assert seen_offices == set(exp["offices"]), kpi["id"]
        for row in kpi["rows"]:
            want = exp["offices"][row["id"]] if row["scope"] == "office" else exp["groups"][row["id"]]
            if not close(row[field], want):
                problems.append(f"{kpi['id']} {row['scope']} {row['id']}: {field} {row[field]!r}, expected {want!r}")
    return problems


CASES = [
    pytest.param("2026-10", "calendar", "dn-2025", ["city", "commune"], id="2026-10 calendar, dn-2025"),
    pytest.param("2025-05", "calendar", "qn-2012", ["province", "district", "commune"], id="2025-05 calendar, qn-2012"),
    pytest.param("2026-10", "15-14", "dn-2025", ["city", "commune"], id="2026-10 15-14, dn-2025"),
]


@pytest.mark.parametrize("store_kind", ["prometheus", "victoria"])
@pytest.mark.parametrize(("period", "window", "hierarchy", "levels"), CASES)
def test_report_matches_expected(request: pytest.FixtureRequest, fleet: Fleet, fleet_dir: Path, tmp_path: Path,
                                 store_kind: str, period: str, window: str, hierarchy: str, levels: list[str]) -> None:
    store = request.getfixturevalue(store_kind)
    done = run_report(store.url, tmp_path, "--period", period, "--window", window, "--inventory",
                      str(fleet_dir / "inventory.yaml"), "--format", "json,csv,xlsx", "--outage-resolution", "30m")
    assert done.returncode == 0, done.stderr
    assert "[15/15]" in done.stderr and "wrote" in done.stderr  # progress on stderr
    report = json.loads((tmp_path / f"kpi-report-{period}.json").read_text(encoding="utf-8"))
    start, end = calendar_window(period) if window == "calendar" else window_15_14(period)
    prev = previous_month(period)
    prev_start, prev_end = calendar_window(prev) if window == "calendar" else window_15_14(prev)
    assert report["window"]["start"] == start.isoformat() and report["window"]["end"] == end.isoformat()

    # Hierarchy version: three levels before 1 July 2025, two after.
    assert report["hierarchy"] == {"name": hierarchy, "levels": levels}
    wan = next(k for k in report["kpis"] if k["id"] == "wan_availability")
    assert [r["id"] for r in wan["rows"] if r["scope"] == "level"] == levels

    assert check_values(report, fleet.expected(start, end, period, hierarchy), "value") == []
    assert check_values(report, fleet.expected(prev_start, prev_end, prev, hierarchy), "previous") == []

    # Offices without data are missing, never 0% or 100%.
    for silent in fleet.silent & {o.org_id for o in fleet.hierarchy_offices(hierarchy)}:
        rows = [r for k in report["kpis"] for r in k["rows"] if r["id"] == silent]
        assert rows and all(r["value"] is None and r["status"] == "no_data" for r in rows)

    # Coverage: probe data (org_id) and mail usage read centrally (agency).
    for kpi_id, name, match, label in (("wan_availability", "probe_success", {"service": "wan"}, "org_id"),
                                       ("email_regular_use", "egov_mail_accounts", {}, "agency")):
        want = fleet.expected_coverage(start, end, hierarchy, name, match, label)
        rows = next(k for k in report["kpis"] if k["id"] == kpi_id)["rows"]
        got = {r["id"]: r["coverage"] for r in rows if r["scope"] == "office"}
        assert all(abs(got[o] - want[o]) < 1e-9 for o in got), (kpi_id, got, want)
    late = fleet.late_start & {o.org_id for o in fleet.hierarchy_offices(hierarchy)}
    wan_coverage = {r["id"]: r["coverage"] for r in wan["rows"]}
    assert late and all(0.6 < wan_coverage[o] < 0.8 for o in late)  # the agent started on the 10th

    # Outages of the window, with their durations.
    want_outages = sorted((o["org_id"], o["service"], o["start"], o["seconds"])
                          for o in fleet.expected_outages(start, end, RESOLUTION)
                          if o["org_id"] in fleet.owner(hierarchy))
    got_outages = sorted((o["org_id"], o["service"], round(o["start"]), round(o["seconds"]))
                         for o in report["outages"])
    assert want_outages and got_outages == want_outages

    rows = list(csv.DictReader((tmp_path / f"kpi-report-{period}.csv").open(encoding="utf-8-sig")))
    assert len(rows) == sum(len(k["rows"]) for k in report["kpis"])
    assert {r["status"] for r in rows} >= {"met", "not_met", "no_data"}


def test_predecessors_roll_up(request: pytest.FixtureRequest, fleet: Fleet, fleet_dir: Path, tmp_path: Path,
                              prometheus: Any) -> None:
    """An old commune's agent still reporting under its old org_id counts for the new commune it merged into."""
    (old, new), = fleet.stale_agents.items()
    assert not any(s.labels.get("org_id") == new for s in fleet.series)
    done = run_report(prometheus.url, tmp_path, "--period", "2026-10", "--inventory", str(fleet_dir / "inventory.yaml"),
                      "--format", "json", "--outage-resolution", "30m")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "kpi-report-2026-10.json").read_text(encoding="utf-8"))
    wan = next(k for k in report["kpis"] if k["id"] == "wan_availability")
    row = next(r for r in wan["rows"] if r["id"] == new)
    start, end = calendar_window("2026-10")
    samples = [v for s in fleet.series if s.name == "probe_success" and s.labels["org_id"] == old
               and s.labels["service"] == "wan" for t, v in s.points if start.timestamp() <= t < end.timestamp()]
    assert row["value"] == pytest.approx(sum(samples) / len(samples))
    assert {o["office"] for o in report["outages"] if o["org_id"] == old} <= {new}
    assert report["warnings"] == []


def test_xlsx_sheets_and_languages(fleet_dir: Path, tmp_path: Path, prometheus: Any) -> None:
    from openpyxl import load_workbook

    for lang, summary, header in (("vi", "Tổng hợp", "Giá trị"), ("en", "Summary", "Value")):
        out = tmp_path / lang
        done = run_report(prometheus.url, out, "--period", "2025-05", "--inventory", str(fleet_dir / "inventory.yaml"),
                          "--format", "xlsx", "--lang", lang)
        assert done.returncode == 0, done.stderr
        book = load_workbook(out / "kpi-report-2025-05.xlsx", read_only=True)
        assert book.sheetnames[0] == summary
        assert "wan_availability" in book.sheetnames and len(book.sheetnames) == 17  # summary + 15 KPIs + outages
        cells = [c for row in book[summary].iter_rows(values_only=True) for c in row if c is not None]
        assert header in cells
        book.close()


def test_without_inventory_uses_office_info(tmp_path: Path, victoria: Any, fleet: Fleet) -> None:
    """No --inventory: the offices are those whose agents sent egov_office_info in the window."""
    done = run_report(victoria.url, tmp_path, "--period", "2026-10", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "kpi-report-2026-10.json").read_text(encoding="utf-8"))
    reporting = {s.labels["org_id"] for s in fleet.series if s.name == "egov_office_info"
                 and s.labels["hierarchy"] == "dn-2025"}
    assert {o["org_id"] for o in report["offices"]} == reporting
    assert report["hierarchy"]["levels"] == ["city", "commune"]


@pytest.mark.parametrize("store_kind", ["prometheus", "victoria"])
def test_outages_finer_than_the_samples(request: pytest.FixtureRequest, fleet: Fleet, fleet_dir: Path,
                                        tmp_path: Path, store_kind: str) -> None:
    """10-minute buckets over 30-minute samples: a failed sample stays down until the next sample."""
    store = request.getfixturevalue(store_kind)
    done = run_report(store.url, tmp_path, "--period", "2025-05", "--inventory", str(fleet_dir / "inventory.yaml"),
                      "--format", "json", "--outage-resolution", "10m")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "kpi-report-2025-05.json").read_text(encoding="utf-8"))
    start, end = calendar_window("2025-05")
    want = sorted((o["org_id"], o["service"], o["start"], o["seconds"])
                  for o in fleet.expected_outages(start, end, RESOLUTION))
    got = sorted((o["org_id"], o["service"], round(o["start"]), round(o["seconds"])) for o in report["outages"])
    assert want and got == want
