"""Denial of service on the web surface: 500 concurrent scrapers and 50 slowloris clients against an agent that
runs 200 probes a second; the event-loop lag of the agent must stay at p99 <= 2 ms (issue 10).

The real agent (agent.lifecycle.Agent) runs in this process with 200 `tcp_connect` checks every 1 s against a
listener in the load process, and a lag probe task in its loop (a 10 ms sleep that records how late it wakes
up, as bench_loop_lag.py measures). The load runs in a child process (this script with --load) at nice 19, so
its own CPU never runs in the agent's loop and takes as little as possible from the agent's cores:
  - scrapers: 500 kept-alive connections, each sending GET /metrics, reading the whole answer, and sending the
    next one at once (closed loop: as many scrapes as the agent can serve);
  - slowloris: 50 connections sending request headers one byte a second; each is reopened when the agent drops it.
Two phases, each after a warm-up: the agent alone (the peer: the same agent with no attack), then under attack.
Reported: lag p50/p99/p99.9/max, probe runs per second and skipped runs, scrapes per second and their latency,
slowloris connections dropped and how long they lasted (the agent's web.idle_timeout is 10 s here).

    .venv/bin/python tests/bench/bench_web_dos.py           # about 1.5 min
    .venv/bin/python tests/bench/bench_web_dos.py --quick   # about 35 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c

NAME = "bench_web_dos"
GOAL_P99_MS = 2.0
LAG_SLEEP = 0.010
CHECKS = 200
SCRAPERS = 500
SLOWLORIS = 50
IDLE_TIMEOUT = 10


def config_text(target: str) -> str:
    lines = "\n".join(f"  - {{name: tcp-{i:03d}, module: tcp_fast, service: other, targets: [\"{target}\"], "
                      f"interval: 1s}}" for i in range(CHECKS))
    return (
        'office: {org_id: "000.00.00.H49", name: "Benchmark office", level: province}\n'
        f"web: {{idle_timeout: {IDLE_TIMEOUT}s}}\n"
        "modules:\n  tcp_fast: {kind: tcp, timeout: 500ms, tcp: {preferred_ip_protocol: ip4}}\n"
        f"checks:\n{lines}\n"
    )


# ---------------------------------------------------------------------------------------------- the agent side


class LagProbe:
    """Sleeps LAG_SLEEP in a loop and records how late each wake-up was, while `recording` is set.

    Also records the lateness minus the time the loop's thread spent waiting for a CPU (the kernel's run-queue
    wait, /proc/thread-self/schedstat): on a shared machine that wait is other processes' doing, not the loop's.
    """

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.loop_lags: list[float] = []
        self.recording = False

    async def run(self) -> None:
        with Path("/proc/thread-self/schedstat").open("rb", buffering=0) as schedstat:  # noqa: ASYNC230 - procfs
            def waited() -> float:
                schedstat.seek(0)
                return int(schedstat.read().split()[1]) / 1e9

            while True:
                started, wait0 = time.perf_counter(), waited()
                await asyncio.sleep(LAG_SLEEP)
                if self.recording:
                    lag = max(0.0, time.perf_counter() - started - LAG_SLEEP)
                    self.lags.append(lag)
                    self.loop_lags.append(max(0.0, lag - (waited() - wait0)))


async def measure(agent: Any, probe: LagProbe, seconds: float) -> dict[str, Any]:
    switches0 = preempted()
    runs0 = sum(agent.metrics.runs.values())
    skips0 = sum(agent.metrics.skipped.values())
    cpu0, t0 = c.cpu_seconds(), time.monotonic()
    probe.lags, probe.loop_lags = [], []
    probe.recording = True
    await asyncio.sleep(seconds)
    probe.recording = False
    elapsed = time.monotonic() - t0
    lags = [lag * 1000 for lag in probe.lags]
    loop_lags = [lag * 1000 for lag in probe.loop_lags]
    return {
        "window_seconds": elapsed,
        "runs_per_second": (sum(agent.metrics.runs.values()) - runs0) / elapsed,
        "skips_per_second": (sum(agent.metrics.skipped.values()) - skips0) / elapsed,
        "agent_cpu_percent": (c.cpu_seconds() - cpu0) / elapsed * 100,
        "lag_samples": len(lags),
        "lag_p50_ms": c.percentile(lags, 50),
        "lag_p99_ms": c.percentile(lags, 99),
        "lag_p999_ms": c.percentile(lags, 99.9),
        "lag_max_ms": max(lags) if lags else float("nan"),
        "preempted_per_second": (preempted() - switches0) / elapsed,
        "loop_lag_p50_ms": c.percentile(loop_lags, 50),
        "loop_lag_p99_ms": c.percentile(loop_lags, 99),
        "loop_lag_max_ms": max(loop_lags) if loop_lags else float("nan"),
    }


def preempted() -> int:
    """Involuntary context switches of this process so far: the kernel gave the CPU to someone else."""
    with Path("/proc/self/status").open() as status:
        return sum(int(line.split()[1]) for line in status if line.startswith("nonvoluntary_ctxt_switches"))


async def run_agent(quick: bool, interval: float) -> dict[str, Any]:
    from agent.config import load_config
    from agent.lifecycle import Agent

    warmup, window = (5.0, 10.0) if quick else (10.0, 30.0)
    logs = c.RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    target_port, web_port = c.free_port(), c.free_port()
    config_path = logs / f"{NAME}.yaml"
    config_path.write_text(config_text(f"127.0.0.1:{target_port}"), encoding="utf-8")
    load = subprocess.Popen(  # noqa: ASYNC220 - started once, before the measured phases
        [sys.executable, __file__, "--load", "--target-port", str(target_port), "--web-port", str(web_port),
         "--wait", str(warmup + window + 2), "--interval", str(interval)],
        stdout=subprocess.PIPE, stderr=(logs / f"{NAME}-load.log").open("wb"), stdin=subprocess.PIPE)
    agent = Agent(load_config(config_path), str(config_path), f"127.0.0.1:{web_port}")
    agent_task = asyncio.create_task(agent.run(), name="agent")
    probe = LagProbe()
    probe_task = asyncio.create_task(probe.run())
    phases: dict[str, Any] = {}
    try:
        while len(agent.scheduler.jobs()) < CHECKS:
            if agent_task.done():
                agent_task.result()
            await asyncio.sleep(0.05)
        await asyncio.sleep(warmup)
        phases["agent alone (peer)"] = await measure(agent, probe, window)
        assert load.stdin is not None
        load.stdin.write(b"go\n")
        load.stdin.flush()
        await asyncio.sleep(warmup)
        phases["agent under attack"] = await measure(agent, probe, window)
        out, _ = await asyncio.to_thread(load.communicate, None, 120)
        phases["load"] = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        probe_task.cancel()
        agent.stop()
        await asyncio.wait_for(agent_task, timeout=20)
        if load.poll() is None:
            load.kill()
            load.wait(timeout=10)
    return phases


# ---------------------------------------------------------------------------------------------- the load side


async def scraper(port: int, stop: asyncio.Event, latencies: list[float], errors: list[str],
                  interval: float) -> None:
    request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n\r\n"
    await asyncio.sleep(random.uniform(0, interval))
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as err:
            errors.append(type(err).__name__)
            await asyncio.sleep(0.5)
            continue
        try:
            while not stop.is_set():
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors.append(head.split(b"\r\n")[0].decode())
                latencies.append(time.perf_counter() - started)
                if interval:
                    await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
        except (OSError, asyncio.IncompleteReadError, StopIteration) as err:
            errors.append(type(err).__name__)
        finally:
            writer.close()


async def slowloris(port: int, stop: asyncio.Event, lifetimes: list[float]) -> None:
    header = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        opened = time.monotonic()
        try:
            for byte in header:
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    async with asyncio.timeout(1.0):
                        if not await reader.read(1):
                            break  # closed by the agent
                except TimeoutError:
                    continue
                break
        except OSError:
            pass
        finally:
            lifetimes.append(time.monotonic() - opened)
            writer.close()


async def accept_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def run_load(target_port: int, web_port: int, wait: float, interval: float) -> dict[str, Any]:
    server = await asyncio.start_server(accept_and_close, "127.0.0.1", target_port, backlog=1024)
    loop = asyncio.get_running_loop()
    go = await loop.run_in_executor(None, sys.stdin.readline)
    assert go.strip() == "go"
    stop = asyncio.Event()
    latencies: list[float] = []
    errors: list[str] = []
    lifetimes: list[float] = []
    tasks = [asyncio.create_task(scraper(web_port, stop, latencies, errors, interval)) for _ in range(SCRAPERS)]
    tasks += [asyncio.create_task(slowloris(web_port, stop, lifetimes)) for _ in range(SLOWLORIS)]
    started = time.monotonic()
    await asyncio.sleep(wait)
    stop.set()
    elapsed = time.monotonic() - started
    await asyncio.wait(tasks, timeout=15)
    for task in tasks:
        task.cancel()
    server.close()
    ms = [x * 1000 for x in latencies]
    return {
        "seconds": elapsed,
        "scrapes": len(latencies),
        "scrapes_per_second": len(latencies) / elapsed,
        "scrape_p50_ms": c.percentile(ms, 50),
        "scrape_p99_ms": c.percentile(ms, 99),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:10],
        "slowloris_dropped": len(lifetimes),
        "slowloris_lifetime_p50_s": c.percentile(lifetimes, 50),
        "slowloris_lifetime_max_s": max(lifetimes) if lifetimes else None,
    }


# ---------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="about 35 s instead of about 1.5 min")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between two scrapes of one scraper (default 1: 500 scrapes/s); 0 floods: each "
                             "scraper sends its next request as soon as the answer is in")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--target-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--web-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--wait", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        # A real attacker's CPU is on other machines: here it runs at the lowest priority, so that the agent's
        # lag shows what the attack costs the agent, not what the attacker's own work takes from a 2-core box.
        os.nice(19)
        print(json.dumps(asyncio.run(run_load(args.target_port, args.web_port, args.wait, args.interval))),
              flush=True)
        return 0
    logging.basicConfig(level=logging.WARNING)
    rate = f"each every {args.interval:g} s" if args.interval else "flooding"
    print(f"{NAME}: {CHECKS} tcp_connect checks every 1 s; {SCRAPERS} scrapers ({rate}) and {SLOWLORIS} slowloris "
          f"clients in a second process; {'quick' if args.quick else 'full'} run")
    phases = asyncio.run(run_agent(args.quick, args.interval))
    load = phases.pop("load")
    alone, attacked = phases["agent alone (peer)"], phases["agent under attack"]
    c.print_table(
        f"event-loop lag of the agent (lag probe: sleep {LAG_SLEEP * 1000:g} ms, overshoot)",
        ["phase", "secs", "runs/s", "skips/s", "CPU %", "preempted/s", "lag p50 ms", "p99", "p99.9", "max",
         "p99 vs peer"],
        [[name, p["window_seconds"], p["runs_per_second"], p["skips_per_second"], p["agent_cpu_percent"],
          p["preempted_per_second"],
          p["lag_p50_ms"], p["lag_p99_ms"], p["lag_p999_ms"], p["lag_max_ms"],
          c.fmt_ratio(c.ratio(p["lag_p99_ms"], alone["lag_p99_ms"]))] for name, p in phases.items()],
    )
    c.print_table("the same lag minus the thread's wait for a CPU (run-queue wait from /proc/thread-self/schedstat)",
                  ["phase", "lag p50 ms", "p99", "max", "p99 vs peer"],
                  [[name, p["loop_lag_p50_ms"], p["loop_lag_p99_ms"], p["loop_lag_max_ms"],
                    c.fmt_ratio(c.ratio(p["loop_lag_p99_ms"], alone["loop_lag_p99_ms"]))]
                   for name, p in phases.items()])
    c.print_table("the attack, as the load process saw it",
                  ["scrapes/s", "scrape p50 ms", "p99", "errors", "slowloris dropped", "their lifetime p50 s",
                   "max s"],
                  [[load["scrapes_per_second"], load["scrape_p50_ms"], load["scrape_p99_ms"], load["errors"],
                    load["slowloris_dropped"], load["slowloris_lifetime_p50_s"], load["slowloris_lifetime_max_s"]]])
    met = attacked["lag_p99_ms"] <= GOAL_P99_MS
    met_loop = attacked["loop_lag_p99_ms"] <= GOAL_P99_MS
    print(f"\ngoal: loop lag p99 <= {GOAL_P99_MS:g} ms under attack: {'PASS' if met else 'FAIL'} "
          f"({attacked['lag_p99_ms']:.2f} ms; {attacked['runs_per_second']:.0f} probe runs/s); without the wait "
          f"for a CPU: {'PASS' if met_loop else 'FAIL'} ({attacked['loop_lag_p99_ms']:.2f} ms)")
    c.write_result(NAME, {
        "settings": {"checks": CHECKS, "scrapers": SCRAPERS, "slowloris": SLOWLORIS, "idle_timeout": IDLE_TIMEOUT,
                     "scrape_interval": args.interval, "quick": args.quick},
        "phases": phases, "load": load,
        "goal": {"lag_p99_ms_max": GOAL_P99_MS, "met": met, "met_without_cpu_wait": met_loop},
        "ratios_vs_peer": {"lag_p99": c.ratio(attacked["lag_p99_ms"], alone["lag_p99_ms"])},
    })
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
