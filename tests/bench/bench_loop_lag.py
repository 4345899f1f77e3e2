"""Event-loop lag with 1,000 no-op check runs per second: the real agent against a bare-asyncio peer.

A bench-only kind `benchnoop` (its probe records one sample and returns True) is registered into
collectors.COLLECTORS before the config models are built; the config has one check with 1,000 targets every 1 s.
Three phases run one after the other in this process, each on a fresh event loop, with a lag probe task that
sleeps 10 ms and records how late it wakes up:
  1. empty loop: only the lag probe (the floor of the measurement: timer and selector resolution);
  2. peer: the same 1,000 jobs through the agent's own Runner -> ResultStore -> SelfMetrics + Exposition, but
     scheduled with plain loop.call_at timers (same jitter, never two runs of one job at once): what the
     pipeline costs without APScheduler;
  3. agent: the real agent.lifecycle.Agent (APScheduler, web server on 127.0.0.1, self-metrics, all of it).
Reported: lag p50/p99/p99.9/max, runs done per second, skipped runs, and this process's CPU (utime+stime).
Goal (issue): lag p99 <= 2 ms. When the agent misses it, a fourth phase runs the agent under cProfile and prints
where the loop's time goes (by package, and the top functions); --profile forces that phase.

    .venv/bin/python tests/bench/bench_loop_lag.py           # about 2.1 min
    .venv/bin/python tests/bench/bench_loop_lag.py --quick   # about 30 s
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import pstats
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _common as c

from agent.runner import Job, Runner
from agent.selfmetrics import SelfMetrics
from agent.store import ResultStore
from collectors import COLLECTORS
from collectors.base import CollectorSpec, MetricSpec, ProbeContext, Settings
from exporters.exposition import Exposition

NAME = "bench_loop_lag"
KIND = "benchnoop"
GOAL_P99_MS = 2.0
LAG_SLEEP = 0.010
TARGETS = 1000
OFFICE = {"org_id": "000.00.20.H49", "level": "province"}


class NoopSettings(Settings):
    """The no-op kind has no settings."""


async def probe_noop(ctx: ProbeContext, _: NoopSettings) -> bool:
    """Record one sample and succeed, without awaiting anything."""
    ctx.sink.add("egov_bench_noop", 1.0)
    return True


SPEC: CollectorSpec[NoopSettings] = CollectorSpec(
    kind=KIND, settings=NoopSettings, probe=probe_noop,
    metrics=(MetricSpec("egov_bench_noop", "gauge", "Always 1."),),
)
# Before agent.config builds (and caches) its models from the registry.
COLLECTORS[KIND] = SPEC

from agent.config import load_config  # noqa: E402 - after the bench kind is registered
from agent.lifecycle import Agent, jobs_from_config, office_labels  # noqa: E402


def config_text(targets: int, interval: str) -> str:
    lines = "\n".join(f"      - noop-{i:04d}" for i in range(targets))
    return (
        f'office: {{org_id: "{OFFICE["org_id"]}", name: "Benchmark office", level: {OFFICE["level"]}}}\n'
        f"modules:\n  noop: {{kind: {KIND}, timeout: 500ms}}\n"
        f"checks:\n  - name: noop\n    module: noop\n    service: other\n    interval: {interval}\n"
        f"    targets:\n{lines}\n"
    )


class LagProbe:
    """Sleeps LAG_SLEEP in a loop and records how late each wake-up was, while `recording` is set."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.recording = False

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(LAG_SLEEP)
            if self.recording:
                self.lags.append(max(0.0, time.perf_counter() - started - LAG_SLEEP))


class Window:
    """Counters read at the start and end of the measurement window."""

    def __init__(self, runs: Callable[[], int], skips: Callable[[], int]) -> None:
        self.runs, self.skips = runs, skips
        self.start: dict[str, float] = {}

    def open(self) -> None:
        self.start = {"t": time.monotonic(), "cpu": c.cpu_seconds(), "runs": self.runs(), "skips": self.skips()}

    def close(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.start["t"]
        return {
            "window_seconds": elapsed,
            "runs_per_second": (self.runs() - self.start["runs"]) / elapsed,
            "skips_per_second": (self.skips() - self.start["skips"]) / elapsed,
            "cpu_percent_of_one_core": (c.cpu_seconds() - self.start["cpu"]) / elapsed * 100.0,
        }


async def measured(probe: LagProbe, window: Window, warmup: float, duration: float,
                   profile: cProfile.Profile | None = None) -> dict[str, Any]:
    """Wait out the warm-up, then record lag and counters for `duration` seconds."""
    await asyncio.sleep(warmup)
    window.open()
    probe.recording = True
    if profile is not None:
        profile.enable()
    await asyncio.sleep(duration)
    if profile is not None:
        profile.disable()
    probe.recording = False
    stats = window.close()
    lags = [lag * 1000.0 for lag in probe.lags]
    return {
        **stats,
        "lag_samples": len(lags),
        "lag_p50_ms": c.percentile(lags, 50),
        "lag_p90_ms": c.percentile(lags, 90),
        "lag_p99_ms": c.percentile(lags, 99),
        "lag_p999_ms": c.percentile(lags, 99.9),
        "lag_max_ms": max(lags) if lags else float("nan"),
        "lag_over_2ms_percent": 100.0 * sum(1 for lag in lags if lag > 2.0) / len(lags) if lags else 0.0,
    }


# ---------------------------------------------------------------------------------------------- phases


async def phase_empty(warmup: float, duration: float) -> dict[str, Any]:
    probe = LagProbe()
    task = asyncio.create_task(probe.run())
    try:
        return await measured(probe, Window(lambda: 0, lambda: 0), warmup, duration)
    finally:
        task.cancel()


class TimerScheduler:
    """The peer's scheduler: one loop.call_at timer per job, APScheduler's jitter, one run of a job at a time."""

    def __init__(self, run: Callable[[Job], Awaitable[None]]) -> None:
        self._run = run
        self._loop = asyncio.get_running_loop()
        self._in_flight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._handles: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self.skipped = 0

    def start(self, jobs: list[Job]) -> None:
        now = self._loop.time()
        for job in jobs:
            due = now + random.uniform(0, min(job.interval, 10.0))
            self._handles[job.key] = self._loop.call_at(due, self._fire, job, due)

    def _fire(self, job: Job, due: float) -> None:
        next_due = due + job.interval
        jitter = min(job.interval * 0.1, 5.0)
        self._handles[job.key] = self._loop.call_at(next_due + random.random() * jitter, self._fire, job, next_due)
        if job.key in self._in_flight:
            self.skipped += 1
            return
        task = self._loop.create_task(self._run(job))
        self._in_flight[job.key] = task
        task.add_done_callback(lambda _, key=job.key: self._in_flight.pop(key, None))

    async def stop(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)


async def phase_peer(config_path: Path, warmup: float, duration: float) -> dict[str, Any]:
    config = load_config(config_path)
    metrics, store = SelfMetrics(), ResultStore()
    exposition = Exposition(office_labels(config))
    runner = Runner(config.agent.max_concurrent_runs)

    def on_result(result: Any, status: Any) -> None:
        metrics.observe_run(result)
        exposition.update(result, status)

    store.subscribe(on_result, exposition.remove)

    async def run(job: Job) -> None:
        metrics.in_flight += 1
        try:
            result = await runner.run(job)
        finally:
            metrics.in_flight -= 1
        store.put(result)

    scheduler = TimerScheduler(run)
    scheduler.start(jobs_from_config(config))
    probe = LagProbe()
    task = asyncio.create_task(probe.run())
    try:
        return await measured(probe, Window(lambda: sum(metrics.runs.values()), lambda: scheduler.skipped),
                              warmup, duration)
    finally:
        task.cancel()
        await scheduler.stop()


async def phase_agent(config_path: Path, warmup: float, duration: float,
                      profile: cProfile.Profile | None = None) -> dict[str, Any]:
    agent = Agent(load_config(config_path), str(config_path), f"127.0.0.1:{c.free_port()}")
    agent_task = asyncio.create_task(agent.run(), name="agent")
    probe = LagProbe()
    probe_task = asyncio.create_task(probe.run())
    try:
        while len(agent.scheduler.jobs()) < TARGETS:
            if agent_task.done():
                agent_task.result()
            await asyncio.sleep(0.05)
        out = await measured(probe, Window(lambda: sum(agent.metrics.runs.values()),
                                           lambda: sum(agent.metrics.skipped.values())),
                             warmup, duration, profile)
        out["agent_own_loop_lag_p99_bucket"] = own_lag_p99(agent)
        return out
    finally:
        probe_task.cancel()
        agent.stop()
        await asyncio.wait_for(agent_task, timeout=15)


def own_lag_p99(agent: Agent) -> str:
    """The agent's own egov_agent_event_loop_lag_seconds histogram: the bucket holding its p99."""
    buckets = agent.metrics.loop_lag.buckets()
    total = buckets[-1][1]
    for bound, count in buckets:
        if total and count >= 0.99 * total:
            return f"<= {bound} s"
    return "-"


# ---------------------------------------------------------------------------------------------- profile


GROUPS = (
    ("apscheduler", "/apscheduler/"),
    ("asyncio", "/asyncio/"),
    ("agent", "/agent/"),
    ("collectors", "/collectors/"),
    ("exporters", "/exporters/"),
    ("aiohttp", "/aiohttp/"),
    ("logging", "/logging/"),
    ("datetime/zoneinfo/tzlocal", "zoneinfo"),
    ("bench harness", "/tests/bench/"),
)


IDLE = "idle: waiting in epoll"


def group_of(path: str, func: str) -> str:
    if path == "~" and "select.epoll" in func:
        return IDLE
    for name, needle in GROUPS:
        if needle in path:
            return name
    return "C builtins" if path == "~" else "other Python"


def summarize_profile(profile: cProfile.Profile, seconds: float, top: int = 15) -> dict[str, Any]:
    stats = pstats.Stats(profile)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_group: dict[str, float] = {}
    rows = []
    for (path, line, func), (_, calls, tottime, cumtime, _) in raw.items():
        group = group_of(path, func)
        by_group[group] = by_group.get(group, 0.0) + tottime
        short = path if path == "~" else "/".join(Path(path).parts[-2:])
        rows.append({"function": f"{short}:{line}({func})", "group": group, "calls": calls,
                     "tottime_s": tottime, "cumtime_s": cumtime})
    busy = sum(t for g, t in by_group.items() if g != IDLE)
    groups = sorted(({"group": g, "seconds": t, "percent_of_busy": 100.0 * t / busy if busy and g != IDLE else None,
                      "percent_of_wall": 100.0 * t / seconds} for g, t in by_group.items()),
                    key=lambda g: (g["group"] == IDLE, -g["seconds"]))
    by_tottime = sorted((r for r in rows if r["group"] != IDLE), key=lambda r: -r["tottime_s"])[:top]
    entry_points = [r for r in rows if any(key in r["function"] for key in (
        "(wakeup)", "(_process_jobs)", "(run_coroutine_job)", "(_fire)", "(_run)", "(run_job)", "(put)",
        "(update)", "(observe_run)", "(submit_job)", "(_do_submit_job)", "(get_next_fire_time)",
        "(_run_job_success)", "(update_job)", "(get_due_jobs)", "(_get_run_times)", "(_dispatch_event)"))
        and r["group"] in ("apscheduler", "agent", "exporters")]
    entry_points.sort(key=lambda r: -r["cumtime_s"])
    return {"profiled_seconds": seconds, "busy_seconds": busy, "by_group": groups,
            "top_tottime": by_tottime, "entry_points": entry_points}


def print_profile(summary: dict[str, Any]) -> None:
    c.print_table(f"where the loop's time goes: agent under cProfile for {summary['profiled_seconds']:g} s "
                  "(self time by package; C builtins are time in C functions called from any package)",
                  ["package", "seconds", "% of busy", "% of wall"],
                  [[g["group"], g["seconds"], g["percent_of_busy"], g["percent_of_wall"]]
                   for g in summary["by_group"]], digits=2)
    c.print_table("entry points (cumulative time, includes callees)", ["function", "calls", "cum s", "self s"],
                  [[r["function"], r["calls"], r["cumtime_s"], r["tottime_s"]] for r in summary["entry_points"]],
                  digits=3)
    c.print_table("top functions by self time (idle wait left out)", ["function", "calls", "self s", "cum s"],
                  [[r["function"], r["calls"], r["tottime_s"], r["cumtime_s"]] for r in summary["top_tottime"]],
                  digits=3)


# ---------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="about 30 s instead of about 2.1 min")
    parser.add_argument("--profile", action="store_true", help="always run the cProfile phase")
    parser.add_argument("--no-profile", action="store_true", help="never run the cProfile phase")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    quick = args.quick
    timing = {
        "warmup_seconds": 3.0 if quick else 5.0,
        "empty_seconds": 4.0 if quick else 10.0,
        "peer_seconds": 8.0 if quick else 40.0,
        "agent_seconds": 10.0 if quick else 60.0,
        "profile_seconds": 5.0 if quick else 15.0,
    }
    c.RESULTS_DIR.joinpath("logs").mkdir(parents=True, exist_ok=True)
    config_path = c.RESULTS_DIR / "logs" / f"{NAME}.yaml"
    config_path.write_text(config_text(TARGETS, "1s"), encoding="utf-8")
    print(f"{NAME}: {TARGETS} no-op jobs every 1 s, lag probe sleeping {LAG_SLEEP * 1000:g} ms; "
          f"{'quick' if quick else 'full'} run")

    w = timing["warmup_seconds"]
    phases = {
        "empty loop (floor)": asyncio.run(phase_empty(1.0, timing["empty_seconds"])),
        "peer: asyncio timers + agent pipeline": asyncio.run(phase_peer(config_path, w, timing["peer_seconds"])),
        "agent (APScheduler, lifecycle.Agent)": asyncio.run(phase_agent(config_path, w, timing["agent_seconds"])),
    }
    agent = phases["agent (APScheduler, lifecycle.Agent)"]
    peer = phases["peer: asyncio timers + agent pipeline"]
    met = agent["lag_p99_ms"] <= GOAL_P99_MS
    profile_summary = None
    if (args.profile or not met) and not args.no_profile:
        profile = cProfile.Profile()
        asyncio.run(phase_agent(config_path, w, timing["profile_seconds"], profile))
        profile.dump_stats(str(c.RESULTS_DIR / f"{NAME}.pstats"))
        profile_summary = summarize_profile(profile, timing["profile_seconds"])

    c.print_table(
        f"event-loop lag, {TARGETS} no-op runs/s scheduled (lag probe: sleep {LAG_SLEEP * 1000:g} ms, overshoot)",
        ["phase", "secs", "runs/s", "skips/s", "CPU %", "lag p50 ms", "p90", "p99", "p99.9", "max", ">2ms %",
         "p99 vs peer"],
        [[name, p["window_seconds"], p["runs_per_second"], p["skips_per_second"], p["cpu_percent_of_one_core"],
          p["lag_p50_ms"], p["lag_p90_ms"], p["lag_p99_ms"], p["lag_p999_ms"], p["lag_max_ms"],
          p["lag_over_2ms_percent"], c.fmt_ratio(c.ratio(p["lag_p99_ms"], peer["lag_p99_ms"]))]
         for name, p in phases.items()],
    )
    print(f"\nagent's own egov_agent_event_loop_lag_seconds p99 bucket: {agent['agent_own_loop_lag_p99_bucket']}")
    print(f"goal: loop lag p99 <= {GOAL_P99_MS:g} ms at {TARGETS} runs/s: {'PASS' if met else 'FAIL'} "
          f"({agent['lag_p99_ms']:.2f} ms; CPU {agent['cpu_percent_of_one_core']:.0f}% of one core, "
          f"{agent['cpu_percent_of_one_core'] / max(peer['cpu_percent_of_one_core'], 1e-9):.2f}x the peer's)")
    if profile_summary is not None:
        print_profile(profile_summary)
        print(f"\nfull profile: {(c.RESULTS_DIR / f'{NAME}.pstats').relative_to(c.REPO)} "
              "(python -m pstats FILE, or snakeviz)")
    c.write_result(NAME, {
        "settings": {"targets": TARGETS, "interval_seconds": 1.0, "lag_sleep_seconds": LAG_SLEEP, **timing},
        "phases": phases,
        "goal": {"lag_p99_ms_max": GOAL_P99_MS, "met": met},
        "ratios_vs_peer": {
            "lag_p99": c.ratio(agent["lag_p99_ms"], peer["lag_p99_ms"]),
            "cpu": c.ratio(agent["cpu_percent_of_one_core"], peer["cpu_percent_of_one_core"]),
        },
        "profile": profile_summary,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
