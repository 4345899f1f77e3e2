"""Machine formats: JSON (the whole report) and CSV (one row per KPI and office/level/province; outages apart)."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from exporters.kpi_report.catalogue import Target
from exporters.kpi_report.compute import Report

CSV_COLUMNS = ("period", "kpi", "scope", "id", "name", "level", "value", "target", "op", "status", "previous",
               "change", "coverage", "numerator", "denominator", "offices", "offices_with_data")
OUTAGE_COLUMNS = ("period", "office", "org_id", "service", "check", "target", "start", "end", "seconds")


def report_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-able data (stable English keys; values are raw numbers, ratios 0-1)."""
    period = report.period
    return {
        "period": period.label,
        "window": {"kind": period.window, "start": period.start.isoformat(), "end": period.end.isoformat(),
                   "tz": period.tz.key},
        "hierarchy": {"name": report.hierarchy.name, "levels": list(report.hierarchy.levels)},
        "source": report.source,
        "generated_at": report.generated_at.isoformat(timespec="seconds"),
        "offices": [{"org_id": o.org_id, "name": o.name, "level": o.level, "parent_id": o.parent_id}
                    for o in report.offices],
        "kpis": [{
            "id": r.kpi.id,
            "name": r.kpi.name.model_dump(),
            "plan_section": r.kpi.plan_section,
            "unit": r.kpi.unit,
            "direction": r.kpi.direction,
            "aggregation": r.kpi.aggregation,
            "target_in_force": _target(r.target),
            "plan_target": _target(r.kpi.targets.plan),
            "trend": {"periods": report.trend_periods, **r.trend},
            "unmatched_ids": r.unmatched,
            "rows": [{"scope": row.scope, "id": row.id, "name": row.name, "level": row.level, "value": row.value,
                      "target": row.target, "status": row.status, "previous": row.previous, "change": row.change,
                      "coverage": row.coverage, "numerator": row.numerator, "denominator": row.denominator,
                      "offices": row.offices, "offices_with_data": row.offices_with_data} for row in r.rows],
        } for r in report.results],
        "outages": [{"office": o.office, "org_id": o.org_id, "service": o.service, "check": o.check,
                     "target": o.target, "start": o.start, "end": o.end, "seconds": o.seconds}
                    for o in report.outages],
        "outage_resolution_seconds": report.outage_resolution,
        "warnings": report.warnings,
    }


def write_json(report: Report, path: Path) -> None:
    """Write the JSON report atomically."""
    write_atomic(path, json.dumps(report_dict(report), ensure_ascii=False, indent=1).encode())


def write_csv(report: Report, path: Path, outages_path: Path) -> None:
    """Write the KPI rows and the outages as two CSV files (UTF-8 with BOM, so spreadsheets read the accents)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for result in report.results:
        op = result.target.op if result.target else ""
        for row in result.rows:
            writer.writerow([report.period.label, result.kpi.id, row.scope, row.id, row.name, row.level or "",
                             _num(row.value), _num(row.target), op if row.target is not None else "", row.status,
                             _num(row.previous), _num(row.change), _num(row.coverage), _num(row.numerator),
                             _num(row.denominator), row.offices, row.offices_with_data])
    write_atomic(path, ("\ufeff" + out.getvalue()).encode())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(OUTAGE_COLUMNS)
    for o in report.outages:
        writer.writerow([report.period.label, o.office or "", o.org_id, o.service, o.check, o.target,
                         _num(o.start), _num(o.end), _num(o.seconds)])
    write_atomic(outages_path, ("\ufeff" + out.getvalue()).encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file through a temporary file in the same folder and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _target(target: Target | None) -> dict[str, Any] | None:
    return None if target is None else target.model_dump(mode="json")


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))
