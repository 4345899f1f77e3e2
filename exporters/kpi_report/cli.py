"""`egov-agent kpi-report`: one period's KPI report for every office, level and the province."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.inventory import Inventory
    from exporters.kpi_report.catalogue import Kpi
    from exporters.kpi_report.compute import Report
    from exporters.kpi_report.periods import Period

HELP = "write the monthly modernization KPI report from the central store"
FORMATS = ("xlsx", "csv", "html", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the subcommand's flags."""
    parser.add_argument("--source", required=True, help="Prometheus or VictoriaMetrics base URL, e.g. "
                                                        "http://127.0.0.1:9090")
    parser.add_argument("--period", default="last", help="YYYY-MM, or 'last' (default): the latest period whose "
                                                          "window has ended")
    parser.add_argument("--window", choices=["calendar", "15-14"], default="calendar",
                        help="calendar month, or 15-14: the 15th of the previous month to the 14th of the period "
                             "month (Vietnamese reporting cut-off); default calendar")
    parser.add_argument("--tz", default="Asia/Ho_Chi_Minh", help="time zone of the window (default Asia/Ho_Chi_Minh)")
    parser.add_argument("--format", default="xlsx,csv,html,json", help="comma-separated: xlsx,csv,html,json")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--inventory", help="fleet inventory (YAML or CSV); without it the offices are those that "
                                            "reported egov_office_info in the window")
    parser.add_argument("--kpis", action="append", default=[], metavar="FILE",
                        help="extra KPI catalogue (repeatable), added to the built-in one "
                                                            "(config/kpis.yaml, else /etc/egov-agent/kpis.yaml)")
    parser.add_argument("--no-default-kpis", action="store_true", help="use only the --kpis files")
    parser.add_argument("--lang", choices=["vi", "en"], default="vi", help="language of xlsx and html (default vi)")
    parser.add_argument("--trend", type=int, default=6, help="periods in the trend charts, this one included "
                                                             "(default 6, at least 2)")
    parser.add_argument("--outage-resolution", default="5m", help="bucket length of outage detection (default 5m)")
    parser.add_argument("--timeout", default="60s", help="timeout of one query (default 60s)")
    parser.add_argument("--concurrency", type=int, default=4, help="queries in flight at once (default 4)")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the process exit code (0 written, 1 store or output error, 2 usage/config)."""
    from agent.durations import parse_duration
    from agent.errors import ConfigError
    from agent.inventory import load_inventory
    from exporters.kpi_report.catalogue import default_catalogue, load_catalogues
    from exporters.kpi_report.periods import parse_period
    from exporters.kpi_report.store import StoreError

    started = time.monotonic()
    try:
        formats = _formats(args.format)
        period = parse_period(args.period, args.window, args.tz)
        resolution = parse_duration(args.outage_resolution)
        timeout = parse_duration(args.timeout)
        if args.trend < 2 or args.trend > 36:
            raise ValueError("--trend must be between 2 and 36")
        if args.concurrency < 1 or args.concurrency > 64:
            raise ValueError("--concurrency must be between 1 and 64")
        if resolution < 1 or resolution > period.seconds:
            raise ValueError("--outage-resolution must be between 1s and the window's length")
        paths = ([] if args.no_default_kpis else [default_catalogue()]) + [Path(p) for p in args.kpis]
        if not paths:
            raise ValueError("no KPI catalogue: give --kpis FILE or drop --no-default-kpis")
        kpis = load_catalogues(paths)
        inventory = load_inventory(args.inventory) if args.inventory else None
        if inventory is not None:
            inventory.hierarchy_for(period.last_day)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
    except ConfigError as err:
        print(err.render(), file=sys.stderr)
        return 2
    except (ValueError, LookupError, OSError) as err:
        print(f"egov-agent kpi-report: {err}", file=sys.stderr)
        return 2

    def progress(message: str) -> None:
        print(f"kpi-report: {time.monotonic() - started:6.1f}s {message}", file=sys.stderr, flush=True)

    try:
        report = asyncio.run(_build(args.source, kpis, period, inventory, args.trend, resolution, timeout,
                                    args.concurrency, progress))
    except StoreError as err:
        print(f"egov-agent kpi-report: {err}", file=sys.stderr)
        return 1
    try:
        for path in write_report(report, out, formats, args.lang):
            progress(f"wrote {path}")
    except OSError as err:
        print(f"egov-agent kpi-report: cannot write the report: {err}", file=sys.stderr)
        return 1
    missing = sum(1 for r in report.results for row in r.rows if row.scope == "office" and row.status == "no_data")
    progress(f"done: {len(report.results)} KPIs, {len(report.offices)} offices, {missing} office figures without "
             f"data, {len(report.outages)} outages")
    return 0


def write_report(report: Report, out: Path, formats: list[str], lang: str) -> list[Path]:
    """Write the chosen formats into `out`; returns the files written."""
    stem = out / f"kpi-report-{report.period.label}"
    written = []
    if "json" in formats:
        from exporters.kpi_report.flat import write_json

        write_json(report, stem.with_suffix(".json"))
        written.append(stem.with_suffix(".json"))
    if "csv" in formats:
        from exporters.kpi_report.flat import write_csv

        outages = out / f"kpi-report-{report.period.label}-outages.csv"
        write_csv(report, stem.with_suffix(".csv"), outages)
        written += [stem.with_suffix(".csv"), outages]
    if "xlsx" in formats:
        from exporters.kpi_report.xlsx import write_xlsx

        write_xlsx(report, stem.with_suffix(".xlsx"), lang)
        written.append(stem.with_suffix(".xlsx"))
    if "html" in formats:
        from exporters.kpi_report.html import write_html

        write_html(report, stem.with_suffix(".html"), lang)
        written.append(stem.with_suffix(".html"))
    return written


async def _build(source: str, kpis: list[Kpi], period: Period, inventory: Inventory | None, trend: int,
                 resolution: float, query_timeout: float, concurrency: int, progress: Callable[[str], None]) -> Report:
    from exporters.kpi_report.compute import build_report
    from exporters.kpi_report.store import Store

    async with Store(source, timeout=query_timeout, concurrency=concurrency) as store:
        return await build_report(store, kpis, period, inventory=inventory, trend=trend,
                                  outage_resolution=resolution, progress=progress)


def _formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown --format {','.join(unknown) or repr(text)}; use a comma-separated list of "
                         + ",".join(FORMATS))
    return formats
