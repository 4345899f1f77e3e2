"""Idle footprint: RSS and CPU of the agent (config/agent.yaml) next to node_exporter, both scraped like Prometheus.

Starts three processes side by side on 127.0.0.1:
  - egov-agent with config/agent.yaml (one host check every 15 s),
  - node_exporter with its default collectors and --no-collector.systemd (TESTBED.md section 8),
  - a bare Python that only imports the agent's dependencies and sleeps: the floor no Python agent goes under.
After a warm-up it samples VmRSS (/proc/PID/status) every second and utime+stime (/proc/PID/stat) at the start and
end of the window, while scraping /metrics of the agent and node_exporter every 15 s (gzip, kept-alive
connection, as Prometheus does). Goal (issue): agent idle RSS <= 45 MiB; node_exporter is about 14 MiB.

It also measures, in a fresh interpreter, how much RSS each import step of the agent adds, to show where the
agent's memory goes.

    .venv/bin/python tests/bench/bench_idle.py            # 30 s warm-up + 120 s window (~2.6 min)
    .venv/bin/python tests/bench/bench_idle.py --quick    # 5 s warm-up + 20 s window, scrape every 5 s
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c

NAME = "bench_idle"
GOAL_RSS_MIB = 45.0
FLOOR_IMPORTS = "prometheus_client, psutil, aiohttp, pydantic, yaml, apscheduler.schedulers.asyncio"
FLOOR_CODE = f"import {FLOOR_IMPORTS}, time; print('ready', flush=True); time.sleep(86400)"

# Cumulative import steps, each measured after the previous ones (fresh interpreter, nothing else running).
IMPORT_STEPS: list[tuple[str, str]] = [
    ("python interpreter", "pass"),
    ("+ prometheus_client", "import prometheus_client"),
    ("+ psutil", "import psutil"),
    ("+ yaml", "import yaml"),
    ("+ pydantic", "import pydantic"),
    ("+ aiohttp (client+web)", "import aiohttp, aiohttp.web"),
    ("+ apscheduler asyncio", "import apscheduler.schedulers.asyncio, apscheduler.triggers.interval"),
    ("+ agent.lifecycle (all agent modules)", "import agent.lifecycle, agent.cli"),
    ("+ config models built, agent.yaml loaded", "import agent.config as _c; _c.load_config(CONFIG)"),
]
IMPORT_SCRIPT = """
import json, sys
CONFIG = sys.argv[1]
def rss():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
steps = json.loads(sys.argv[2])
for label, code in steps:
    exec(code)
    print(json.dumps([label, rss(), len(sys.modules)]), flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="about 30 s instead of about 2.6 min")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (default 30, quick 5)")
    parser.add_argument("--duration", type=float, help="measurement window in seconds (default 120, quick 20)")
    parser.add_argument("--scrape-interval", type=float, help="seconds between scrapes (default 15, quick 5)")
    parser.add_argument("--config", type=Path, default=c.REPO / "config" / "agent.yaml", help="agent config")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else (5.0 if args.quick else 30.0)
    duration = args.duration if args.duration is not None else (20.0 if args.quick else 120.0)
    scrape_every = args.scrape_interval if args.scrape_interval is not None else (5.0 if args.quick else 15.0)

    print(f"{NAME}: warm-up {warmup:g} s, window {duration:g} s, scrape every {scrape_every:g} s")
    steps = import_steps(args.config.resolve())
    procs = c.Processes()
    try:
        measured = measure(procs, args.config.resolve(), warmup, duration, scrape_every)
    finally:
        procs.stop_all()
    report(measured, steps, warmup, duration, scrape_every)
    return 0


def import_steps(config: Path) -> list[dict[str, Any]]:
    """RSS after each cumulative import step, in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_SCRIPT, str(config), json.dumps(IMPORT_STEPS)],
        capture_output=True, text=True, timeout=120, check=True, cwd=c.REPO,
    )
    rows = []
    previous = 0
    for line in out.stdout.splitlines():
        label, rss, modules = json.loads(line)
        rows.append({"step": label, "rss_mib": rss / c.MIB, "added_mib": (rss - previous) / c.MIB if previous else None,
                     "modules_loaded": modules})
        previous = rss
    return rows


def measure(procs: c.Processes, config: Path, warmup: float, duration: float, scrape_every: float) -> dict[str, Any]:
    logs = c.RESULTS_DIR / "logs"
    agent_port, node_port = c.free_port(), c.free_port()
    agent = procs.start(c.agent_argv(config, agent_port), logs / f"{NAME}-agent.log")
    node = procs.start(c.node_exporter_argv(node_port), logs / f"{NAME}-node_exporter.log")
    floor_log = logs / f"{NAME}-floor.log"
    floor = procs.start([sys.executable, "-c", FLOOR_CODE], floor_log)

    c.wait_http(f"http://127.0.0.1:{agent_port}/-/ready", agent)
    c.wait_http(f"http://127.0.0.1:{node_port}/metrics", node)
    deadline = time.monotonic() + 30
    while "ready" not in floor_log.read_text():
        if floor.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the floor process did not get ready: {floor_log.read_text()}")
        time.sleep(0.1)

    targets = {"egov-agent": agent, "node_exporter": node, "python import floor": floor}
    scrapers = {
        "egov-agent": c.Scraper(f"http://127.0.0.1:{agent_port}/metrics", gzip=True),
        "node_exporter": c.Scraper(f"http://127.0.0.1:{node_port}/metrics", gzip=True),
    }
    scrape_times: dict[str, list[float]] = {name: [] for name in scrapers}
    series = {
        "egov-agent": count_series(f"http://127.0.0.1:{agent_port}/metrics"),
        "node_exporter": count_series(f"http://127.0.0.1:{node_port}/metrics"),
    }
    rss: dict[str, list[int]] = {name: [] for name in targets}
    anon: dict[str, list[int]] = {name: [] for name in targets}
    cpu_start: dict[str, float] = {}
    started = time.monotonic()
    window_start = started + warmup
    window_end = window_start + duration
    next_scrape = started
    next_sample = window_start
    while True:
        now = time.monotonic()
        for name, process in targets.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {logs}")
        if not cpu_start and now >= window_start:
            cpu_start = {name: c.cpu_seconds(p.pid) for name, p in targets.items()}
            cpu_started_at = now
        if now >= window_end:
            cpu_end = {name: c.cpu_seconds(p.pid) for name, p in targets.items()}
            cpu_window = now - cpu_started_at
            break
        if now >= next_scrape:
            for name, scraper in scrapers.items():
                elapsed, _ = scraper.get()
                if now >= window_start:
                    scrape_times[name].append(elapsed)
            next_scrape += scrape_every
        if now >= next_sample:
            for name, process in targets.items():
                rss[name].append(c.rss_bytes(process.pid))
                anon[name].append(c.rss_anon_bytes(process.pid))
            next_sample += 1.0
        time.sleep(max(0.0, min(next_scrape, next_sample, window_end) - time.monotonic()))

    # series again: the agent's host check has run by now
    series["egov-agent"] = count_series(f"http://127.0.0.1:{agent_port}/metrics")
    for scraper in scrapers.values():
        scraper.close()
    result: dict[str, Any] = {}
    for name, process in targets.items():
        cpu = cpu_end[name] - cpu_start[name]
        result[name] = {
            "pid": process.pid,
            "rss_median_mib": statistics.median(rss[name]) / c.MIB,
            "rss_min_mib": min(rss[name]) / c.MIB,
            "rss_max_mib": max(rss[name]) / c.MIB,
            "rss_last_mib": rss[name][-1] / c.MIB,
            "rss_anon_median_mib": statistics.median(anon[name]) / c.MIB,
            "hwm_mib": c.hwm_bytes(process.pid) / c.MIB,
            "threads": c.threads(process.pid),
            "cpu_seconds": cpu,
            "cpu_seconds_per_minute": cpu / cpu_window * 60.0,
            "cpu_percent_of_one_core": cpu / cpu_window * 100.0,
            "rss_samples": len(rss[name]),
        }
        if name in scrapers:
            result[name]["series"] = series[name]
            result[name]["scrapes"] = c.summary_ms(scrape_times[name])
    return result


def count_series(url: str) -> int:
    status, body = c.http_get_once(url)
    if status != 200:
        raise RuntimeError(f"{url}: HTTP {status}")
    return sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))


def report(measured: dict[str, Any], steps: list[dict[str, Any]], warmup: float, duration: float,
           scrape_every: float) -> None:
    node = measured["node_exporter"]
    rows = []
    for name, m in measured.items():
        rows.append([
            name, m["rss_median_mib"], m["rss_max_mib"], m["rss_anon_median_mib"], m["threads"],
            m["cpu_seconds_per_minute"], m["cpu_percent_of_one_core"], m.get("series"),
            m["scrapes"]["p50_ms"] if "scrapes" in m else None,
            c.fmt_ratio(c.ratio(m["rss_median_mib"], node["rss_median_mib"])),
            c.fmt_ratio(c.ratio(m["cpu_seconds_per_minute"], node["cpu_seconds_per_minute"])),
        ])
    c.print_table(
        f"idle footprint: {duration:g} s window after {warmup:g} s warm-up, /metrics scraped every {scrape_every:g} s",
        ["process", "RSS MiB p50", "RSS max", "anon p50", "threads", "CPU s/min", "CPU %", "series",
         "scrape p50 ms", "RSS vs node", "CPU vs node"],
        rows,
    )
    agent = measured["egov-agent"]
    floor = measured["python import floor"]
    verdict = "PASS" if agent["rss_median_mib"] <= GOAL_RSS_MIB else "FAIL"
    print(f"\ngoal: agent idle RSS <= {GOAL_RSS_MIB:g} MiB: {verdict} ({agent['rss_median_mib']:.1f} MiB; "
          f"{agent['rss_median_mib'] - floor['rss_median_mib']:+.1f} MiB over the import floor)")
    c.print_table("RSS by import step (fresh interpreter, cumulative)", ["step", "RSS MiB", "added MiB", "modules"],
                  [[s["step"], s["rss_mib"], s["added_mib"], s["modules_loaded"]] for s in steps])
    c.write_result(NAME, {
        "settings": {"warmup_seconds": warmup, "window_seconds": duration, "scrape_interval_seconds": scrape_every,
                     "floor_imports": FLOOR_IMPORTS},
        "processes": measured,
        "goal": {"agent_rss_mib_max": GOAL_RSS_MIB, "met": verdict == "PASS"},
        "ratios_vs_node_exporter": {
            "agent_rss": c.ratio(agent["rss_median_mib"], node["rss_median_mib"]),
            "agent_cpu": c.ratio(agent["cpu_seconds_per_minute"], node["cpu_seconds_per_minute"]),
            "floor_rss": c.ratio(floor["rss_median_mib"], node["rss_median_mib"]),
        },
        "import_steps": steps,
    })


if __name__ == "__main__":
    sys.exit(main())
