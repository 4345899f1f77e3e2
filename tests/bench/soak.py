"""Soak: the agent at province load for an hour with a flapping remote-write receiver; RSS, fds, threads and
asyncio tasks must stay flat (issue 10: RSS drift < 10%, file descriptors and tasks flat).

The real agent (agent.lifecycle.Agent) runs in this process, so its asyncio tasks can be counted; everything it
talks to runs in a helper process (this script with --serve): a TCP listener and an HTTP server as probe targets,
and the remote-write receiver of tests/fakes/rw_receiver.py, which flaps: 60 s accepting, 30 s dropping every
connection without an answer, 30 s answering 503, and again. The config has 300 checks (200 tcp_connect, 99
http_2xx, 1 host) every 30 s, about 10 runs a second, and one remote_write destination.
Every --sample-seconds it prints RSS, file descriptors, threads, asyncio tasks, runs done, samples delivered and
the queue's backlog; at the end the drift from the first sample after the warm-up (a fifth of the run, at
least one sample) to the last one, and the maximum.

    .venv/bin/python tests/bench/soak.py                  # one hour
    .venv/bin/python tests/bench/soak.py --minutes 10     # shorter
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

NAME = "soak"
TCP_CHECKS, HTTP_CHECKS = 200, 99
INTERVAL = "30s"
GOAL_RSS_DRIFT = 0.10
FLAP = (("up", 60.0), ("dropping", 30.0), ("503", 30.0))


def config_text(ports: dict[str, int], state_dir: str) -> str:
    checks = [f"  - {{name: tcp-{i:03d}, module: tcp_soak, service: other, targets: [\"127.0.0.1:{ports['tcp']}\"], "
              f"interval: {INTERVAL}}}" for i in range(TCP_CHECKS)]
    checks += [f"  - {{name: http-{i:03d}, module: http_soak, service: portal, "
               f"targets: [\"http://127.0.0.1:{ports['http']}/page{i}\"], interval: {INTERVAL}}}"
               for i in range(HTTP_CHECKS)]
    checks.append(f"  - {{name: host, module: host_soak, service: host, targets: [localhost], interval: {INTERVAL}}}")
    return (
        'office: {org_id: "000.00.00.H49", name: "Soak office", level: province}\n'
        f"agent: {{state_dir: {state_dir}}}\n"
        "modules:\n"
        "  tcp_soak: {kind: tcp, timeout: 2s, tcp: {preferred_ip_protocol: ip4}}\n"
        "  http_soak: {kind: http, timeout: 5s, http: {preferred_ip_protocol: ip4}}\n"
        "  host_soak: {kind: host, timeout: 5s}\n"
        f"checks:\n{chr(10).join(checks)}\n"
        "remote_write:\n"
        f"  - {{url: \"http://127.0.0.1:{ports['rw']}/api/v1/write\", name: central, remote_timeout: 5s,\n"
        "     queue: {batch_send_deadline: 5s, min_backoff: 1s, max_backoff: 10s}}\n"
    )


# ---------------------------------------------------------------------------------------------- helper process


async def serve() -> None:
    """Targets and the flapping receiver; prints their ports as JSON, runs until stdin closes."""
    from aiohttp import web
    from fakes.rw_receiver import FakeReceiver, Reply

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html><body>ok</body></html>", content_type="text/html")

    async def close(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    app = web.Application()
    app.router.add_get("/{name}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    tcp = await asyncio.start_server(close, "127.0.0.1", 0)
    receiver = await FakeReceiver().start()
    ports = {"http": http_port, "tcp": tcp.sockets[0].getsockname()[1],
             "rw": int(receiver.url.split(":")[2].split("/")[0])}
    print(json.dumps(ports), flush=True)
    replies = {"up": Reply(204), "dropping": Reply(drop=True), "503": Reply(503, body=b"overloaded")}

    async def flap() -> None:
        while True:
            for state, seconds in FLAP:
                receiver.default = replies[state]
                receiver.requests.clear()  # keep the helper's own memory flat
                receiver.accepted.clear()
                await asyncio.sleep(seconds)

    flapping = asyncio.create_task(flap())
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    flapping.cancel()
    await receiver.stop()
    tcp.close()
    await runner.cleanup()


# ---------------------------------------------------------------------------------------------- the agent side


def fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


async def soak(minutes: float, sample_seconds: float) -> dict[str, Any]:
    from agent.config import load_config
    from agent.lifecycle import Agent

    logs = c.RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    helper = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=(logs / f"{NAME}-helper.log").open("wb"), cwd=c.REPO,
        env={**os.environ, "PYTHONPATH": str(c.REPO / "tests")})
    assert helper.stdout is not None and helper.stdin is not None
    line = await asyncio.to_thread(helper.stdout.readline)
    ports = json.loads(line)
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="egov-soak-") as state_dir:
        config_path = logs / f"{NAME}.yaml"
        config_path.write_text(config_text(ports, state_dir), encoding="utf-8")
        agent = Agent(load_config(config_path), str(config_path), f"127.0.0.1:{c.free_port()}")
        agent_task = asyncio.create_task(agent.run(), name="agent")
        started = time.monotonic()
        try:
            print(f"{'min':>6} {'RSS MiB':>8} {'anon MiB':>8} {'fds':>5} {'threads':>7} {'tasks':>6} {'runs':>8} "
                  f"{'sent':>9} {'backlog':>8}")
            end = started + minutes * 60
            while True:
                await asyncio.sleep(min(sample_seconds, max(0.0, end - time.monotonic())))
                if agent_task.done():
                    agent_task.result()
                sample = {
                    "minute": (time.monotonic() - started) / 60,
                    "rss_mib": c.rss_bytes() / c.MIB,
                    "anon_mib": c.rss_anon_bytes() / c.MIB,
                    "fds": fds(),
                    "threads": c.threads(),
                    "tasks": len(asyncio.all_tasks()),
                    "runs": sum(agent.metrics.runs.values()),
                    **remote_write_figures(agent),
                }
                samples.append(sample)
                print(f"{sample['minute']:6.1f} {sample['rss_mib']:8.1f} {sample['anon_mib']:8.1f} "
                      f"{sample['fds']:5d} {sample['threads']:7d} {sample['tasks']:6d} {sample['runs']:8d} "
                      f"{sample['sent']:9.0f} {sample['backlog']:8.0f}", flush=True)
                if time.monotonic() >= end:
                    break
        finally:
            agent.stop()
            await asyncio.wait_for(agent_task, timeout=20)
            helper.stdin.close()
            try:
                await asyncio.to_thread(helper.wait, 15)
            except subprocess.TimeoutExpired:
                helper.kill()
    return {"ports": ports, "samples": samples}


def remote_write_figures(agent: Any) -> dict[str, float]:
    """Samples delivered so far and samples waiting in the queue, from the remote-write self-metrics."""
    out = {"sent": 0.0, "backlog": 0.0}
    for family in agent.remote_write.collect():
        for sample in family.samples:
            if sample.name == "egov_agent_remote_write_samples_sent_total":
                out["sent"] += sample.value
            elif sample.name == "egov_agent_remote_write_queue_samples":
                out["backlog"] += sample.value
    return out


def drift(samples: list[dict[str, Any]], key: str) -> dict[str, float]:
    warm = samples[max(1, len(samples) // 5) - 1:] if len(samples) > 1 else samples
    first, last = warm[0][key], warm[-1][key]
    return {"after_warmup": first, "last": last, "max": max(s[key] for s in warm),
            "drift": (last - first) / first if first else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="how long (default 60)")
    parser.add_argument("--sample-seconds", type=float, default=60.0, help="sampling period (default 60)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return 0
    logging.basicConfig(level=logging.WARNING)
    print(f"{NAME}: {TCP_CHECKS + HTTP_CHECKS + 1} checks every {INTERVAL}, remote-write to a receiver flapping "
          f"{' / '.join(f'{s} {t:g}s' for s, t in FLAP)}, {args.minutes:g} min, a sample every "
          f"{args.sample_seconds:g} s")
    result = asyncio.run(soak(args.minutes, args.sample_seconds))
    samples = result["samples"]
    drifts = {key: drift(samples, key) for key in ("rss_mib", "anon_mib", "fds", "threads", "tasks")}
    c.print_table("drift from the first sample after the warm-up to the last", ["", "after warm-up", "last", "max",
                                                                                  "drift"],
                  [[key, d["after_warmup"], d["last"], d["max"], f"{d['drift'] * 100:+.1f}%"]
                   for key, d in drifts.items()])
    runs = samples[-1]["runs"] - samples[0]["runs"]
    minutes = samples[-1]["minute"] - samples[0]["minute"]
    print(f"\nruns: {runs} in {minutes:.1f} min ({runs / max(minutes * 60, 1e-9):.1f}/s)")
    rss_ok = drifts["rss_mib"]["drift"] < GOAL_RSS_DRIFT
    flat = all(drifts[k]["last"] - drifts[k]["after_warmup"] <= 2 for k in ("fds", "threads", "tasks"))
    print(f"goal: RSS drift < {GOAL_RSS_DRIFT:.0%}: {'PASS' if rss_ok else 'FAIL'}; fds, threads and tasks flat "
          f"(within 2): {'PASS' if flat else 'FAIL'}")
    c.write_result(NAME, {"settings": {"minutes": args.minutes, "sample_seconds": args.sample_seconds,
                                       "checks": TCP_CHECKS + HTTP_CHECKS + 1, "interval": INTERVAL,
                                       "flap": FLAP},
                          "samples": samples, "drift": drifts,
                          "goal": {"rss_drift_max": GOAL_RSS_DRIFT, "rss_met": rss_ok, "flat": flat}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
