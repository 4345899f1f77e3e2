"""Benchmark: the monthly KPI report for 300 offices against Prometheus (goal: <= 30 s on this machine).

Generates two months of a 300-office dn-2025 fleet with tests/fakes/fleet_data.py (probe results every 15 min,
source-system gauges every 6 h), backfills them with `promtool tsdb create-blocks-from openmetrics`, starts
Prometheus 2.42 on the blocks and times `egov-agent kpi-report` (all four formats) as a user runs it, three times.
No peer exists for this report; the floor is the store itself: the same queries the report sent, replayed one at a
time with a bare HTTP client (urllib), so the ratio shows what the report adds on top of Prometheus' own work.

    .venv/bin/python tests/bench/bench_kpi_report.py [--quick] [--offices 300] [--probe-interval 900]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import _common as c

sys.path.insert(0, str(c.REPO / "tests"))
from fakes.fleet_data import build_fleet

GOAL_SECONDS = 30.0
# `egov-agent kpi-report ...` as the console script runs it, printing its own peak RSS at the end.
# (VmHWM, not ru_maxrss: Linux keeps the forking parent's ru_maxrss across exec.)
_WITH_PEAK_RSS = ("import sys; from agent.cli import main; code = main(sys.argv[1:]); "
                  "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
                  "print(f'maxrss_kib={hwm}', file=sys.stderr); sys.exit(code)")
PERIOD = "2026-10"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed run instead of three")
    parser.add_argument("--offices", type=int, default=300)
    parser.add_argument("--probe-interval", type=int, default=900)
    args = parser.parse_args()
    processes = c.Processes()
    logs = c.RESULTS_DIR / "logs"
    with tempfile.TemporaryDirectory(prefix="bench-kpi-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        fleet = build_fleet(months=["2026-09", PERIOD], departments=14, districts=0, communes_per_district=0,
                            new_communes=args.offices - 15, probe_interval=args.probe_interval,
                            only_hierarchy="dn-2025")
        samples = sum(len(s.points) for s in fleet.series)
        (folder / "inventory.yaml").write_text(fleet.inventory_yaml(), encoding="utf-8")
        with (folder / "fleet.om").open("w", encoding="utf-8") as handle:
            handle.writelines(fleet.openmetrics())
        generated = time.perf_counter() - started
        data = folder / "data"
        data.mkdir()
        started = time.perf_counter()
        c.subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=1488h",
                          "-q", str(folder / "fleet.om"), str(data)], check=True, timeout=600, capture_output=True)
        backfilled = time.perf_counter() - started
        (folder / "fleet.om").unlink()
        (folder / "prometheus.yml").write_text("global: {scrape_interval: 1m}\n", encoding="utf-8")
        port = c.free_port()
        url = f"http://127.0.0.1:{port}"
        try:
            prometheus = processes.start(
                ["prometheus", f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
                 f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=20y"],
                logs / "bench_kpi_report-prometheus.log", cwd=folder)
            c.wait_http(f"{url}/-/ready", prometheus)
            print(f"{len(fleet.offices)} offices, {samples:,} samples: generated in {generated:.1f} s, "
                  f"backfilled in {backfilled:.1f} s")
            runs = []
            for index in range(1 if args.quick else 3):
                out = folder / f"out{index}"
                started = time.perf_counter()
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                done = c.subprocess.run(
                    [sys.executable, "-c", _WITH_PEAK_RSS, "kpi-report", "--source", url, "--period", PERIOD,
                     "--inventory", str(folder / "inventory.yaml"), "--format", "xlsx,csv,html,json",
                     "--out", str(out)], capture_output=True, text=True, timeout=600, check=False)
                wall = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if done.returncode != 0:
                    raise RuntimeError(f"kpi-report failed:\n{done.stderr}")
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                peak = int(done.stderr.rsplit("maxrss_kib=", 1)[1].split()[0])
                runs.append({"wall_s": wall, "report_cpu_s": cpu, "max_rss_mib": peak / 1024})
                (logs / f"bench_kpi_report-run{index}.log").write_text(done.stderr, encoding="utf-8")
            queries = asyncio.run(_record_queries(url, folder / "inventory.yaml"))
            floor = _replay(url, queries)
        finally:
            processes.stop_all()
    best = min(r["wall_s"] for r in runs)
    c.print_table("kpi-report, one month, all formats (wall seconds, includes interpreter start-up; peak RSS of "
                  "the report process)",
                  ["run", "wall s", "report CPU s", "max RSS MiB"],
                  [[f"#{i + 1}", r["wall_s"], r["report_cpu_s"], r["max_rss_mib"]] for i, r in enumerate(runs)])
    c.print_table("against the goal and the floor", ["measure", "seconds", "ratio"],
                  [["report (best run)", best, "-"],
                   ["goal", GOAL_SECONDS, c.fmt_ratio(c.ratio(best, GOAL_SECONDS))],
                   [f"floor: the report's {len(queries)} queries replayed one by one", floor,
                    c.fmt_ratio(c.ratio(best, floor))]])
    met = best <= GOAL_SECONDS
    print(f"\ngoal (<= {GOAL_SECONDS:.0f} s for {len(fleet.offices)} offices): {'met' if met else 'NOT met'}")
    c.write_result("bench_kpi_report", {
        "offices": len(fleet.offices), "samples": samples, "probe_interval_s": args.probe_interval,
        "generate_s": generated, "backfill_s": backfilled, "runs": runs, "best_wall_s": best,
        "queries": len(queries), "floor_s": floor, "goal_s": GOAL_SECONDS, "goal_met": met})


async def _record_queries(url: str, inventory: Path) -> list[tuple[str, dict[str, str]]]:
    """The report's queries (path and form), captured by running it in-process once."""
    from agent.inventory import load_inventory
    from exporters.kpi_report.catalogue import default_catalogue, load_catalogues
    from exporters.kpi_report.compute import build_report
    from exporters.kpi_report.periods import parse_period
    from exporters.kpi_report.store import Store

    recorded: list[tuple[str, dict[str, str]]] = []

    class Recording(Store):
        async def _call(self, path: str, form: dict[str, str]) -> dict:  # type: ignore[override]
            recorded.append((path, dict(form)))
            return await super()._call(path, form)

    async with Recording(url) as store:
        await build_report(store, load_catalogues([default_catalogue()]), parse_period(PERIOD, "calendar",
                           "Asia/Ho_Chi_Minh"), inventory=load_inventory(inventory))
    return recorded


def _replay(url: str, queries: list[tuple[str, dict[str, str]]]) -> float:
    started = time.perf_counter()
    for path, form in queries:
        body = urllib.parse.urlencode(form).encode()
        with urllib.request.urlopen(urllib.request.Request(url + path, data=body), timeout=120) as response:
            response.read()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
