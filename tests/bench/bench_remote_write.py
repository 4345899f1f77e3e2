"""Remote-write throughput: encode + compress, disk-queue appends, and draining a day's backlog into VictoriaMetrics.

Phases, one after the other in this process (the drain also starts victoria-metrics on 127.0.0.1):
  1. encode: results of a commune-like config (jobs of 20 samples with 8 labels each) through the agent's Encoder
     (protobuf runtime, cached label bytes), joined into requests of 2,000 samples and snappy-compressed; samples
     per CPU-second (process_time). Peer: the straightforward protobuf build (a message per label and sample, no
     caching), the way a first implementation would do it.
  2. append: the same fragments handed to a DiskQueue (event-loop side) until its thread has written them all;
     samples per second (wall) and the event loop's cost per append. Peer: sqlite3 in WAL mode with
     synchronous=NORMAL, one transaction per second's worth of rows (RELIABILITY.md §2.6's alternative design).
  3. drain: a backlog of BACKLOG samples (24 h of a commune, default 3,000,000; --quick 300,000) written to a
     queue first, then sent by the agent's Sender to VictoriaMetrics on loopback; wall time until the queue is
     empty, checked against vm_rows_inserted_total. A scaled run is extrapolated linearly to 3M and says so.
  4. steady: two real agents (`python -m agent run`) side by side with the same commune-like config (a host check
     every 30 s and 20 process checks every 15, 20 or 30 s; no scrapes), one also pushing to victoria-metrics with
     the default queue settings; after a warm-up, each one's CPU (utime+stime) over STEADY_SECONDS as a share of
     one core. The push costs the difference. Peer: the same agent without remote_write.
Goals (issue 7): encode+compress >= 200k samples/CPU-s; appends >= 100k samples/s; 3M-sample drain <= 5 min;
steady push of a commune config < 1% of one core.

    .venv/bin/python tests/bench/bench_remote_write.py                  # about 3 min
    .venv/bin/python tests/bench/bench_remote_write.py --quick          # about 1 min
    .venv/bin/python tests/bench/bench_remote_write.py --phases steady  # only the steady push, about 1.5 min
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c
import cramjam

from agent.errors import Outcome
from agent.runner import Job, ProbeResult
from collectors.base import CollectorSpec, MetricSpec, Sample, Settings
from exporters.remote_write import remote_pb2
from exporters.remote_write.config import RemoteWriteConfig
from exporters.remote_write.encode import Encoder, Fragment
from exporters.remote_write.queue import DiskQueue
from exporters.remote_write.sender import Sender

NAME = "bench_remote_write"
GOAL_ENCODE = 200_000
GOAL_APPEND = 100_000
GOAL_DRAIN_SECONDS = 300.0
GOAL_PUSH_PERCENT = 1.0
PHASES = ("encode", "append", "drain", "steady")
STEADY_SECONDS = 60.0
STEADY_WARMUP = 20.0
FULL_BACKLOG = 3_000_000
OFFICE = {"org_id": "000.00.20.H49", "level": "commune"}
SPEC = CollectorSpec("bench", Settings, None, (MetricSpec("egov_bench_value", "gauge", "v", ("part", "kind")),))  # type: ignore[arg-type]


def results(jobs: int, rounds: int, start: float, step: float) -> list[ProbeResult]:
    """`rounds` results of each of `jobs` jobs (18 samples + the 2 run metrics = 20 each), `step` s apart."""
    job_list = [Job(f"check-{j}", f"https://portal-{j}.example.gov.vn/", "http_2xx", "portal", step, 5.0, SPEC,
                    Settings()) for j in range(jobs)]
    out = []
    for r in range(rounds):
        for j, job in enumerate(job_list):
            samples = [Sample("egov_bench_value", (("part", f"p{i}"), ("kind", "phase")), float(r * 7 + i + j))
                       for i in range(18)]
            out.append(ProbeResult(job, True, Outcome.SUCCESS, 0.05 + j / 1000, start + r * step + j / 100,
                                   samples))
    return out


def bench_encode(count: int) -> dict[str, float]:
    """Samples per CPU-second for encode + compress, ours and the naive protobuf build."""
    batch = results(50, max(1, count // (50 * 20)), time.time() - 86400, 15.0)
    samples = sum(len(r.samples) + 2 for r in batch)
    encoder = Encoder(OFFICE)
    encoder.encode(batch[0])
    started = time.process_time()
    pending: list[bytes] = []
    pending_samples = 0
    for result in batch:
        for fragment in encoder.encode(result):
            pending.append(fragment.payload)
            pending_samples += fragment.samples
            if pending_samples >= 2000:
                bytes(cramjam.snappy.compress_raw(b"".join(pending)))
                pending, pending_samples = [], 0
    ours = samples / (time.process_time() - started)

    started = time.process_time()
    request = remote_pb2.WriteRequest()
    in_request = 0
    for result in batch:
        job = result.job
        rows = [("probe_success", (), 1.0), ("probe_duration_seconds", (), result.duration), *result.samples]
        for name, labels, value in rows:
            pairs = sorted({"__name__": name, **dict(labels), "check": job.check, "module": job.module,
                            "service": job.service, "target": job.target, **OFFICE}.items())
            series = request.timeseries.add()
            for label_name, label_value in pairs:
                series.labels.add(name=label_name, value=label_value)
            series.samples.add(value=value, timestamp=int(result.finished_at * 1000))
            in_request += 1
            if in_request >= 2000:
                bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
                request, in_request = remote_pb2.WriteRequest(), 0
    peer = samples / (time.process_time() - started)
    return {"samples": samples, "ours_per_cpu_s": ours, "peer_per_cpu_s": peer}


async def bench_append(fragments: list[Fragment], directory: Path) -> dict[str, float]:
    """Samples per second appended to a DiskQueue until written, and the loop's time per append call."""
    queue = DiskQueue(directory, max_bytes=4 * 2**30, max_age=30 * 86400.0, memory_bytes=256 * 2**20,
                      dead_letter_bytes=0)
    await queue.open()
    samples = sum(f.samples for f in fragments)
    started = time.perf_counter()
    loop_cpu = 0.0
    for start in range(0, len(fragments), 1):
        before = time.perf_counter()
        queue.append(fragments[start : start + 1])
        loop_cpu += time.perf_counter() - before
        if start % 2000 == 0:
            await asyncio.sleep(0)
    await queue.sync()
    elapsed = time.perf_counter() - started
    dropped = sum(queue.stats.dropped.values())
    await queue.close()
    return {"samples": samples, "per_s": samples / elapsed, "loop_us_per_append": loop_cpu / len(fragments) * 1e6,
            "dropped": dropped}


def bench_sqlite(fragments: list[Fragment], path: Path) -> float:
    """Samples per second inserted into sqlite3 (WAL, synchronous=NORMAL), one commit per 1,000 fragments."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE q (seq INTEGER PRIMARY KEY, ts INTEGER, samples INTEGER, payload BLOB)")
    samples = sum(f.samples for f in fragments)
    started = time.perf_counter()
    for start in range(0, len(fragments), 1000):
        with db:
            db.executemany("INSERT INTO q (ts, samples, payload) VALUES (?, ?, ?)",
                           [(f.timestamp_ms, f.samples, f.payload) for f in fragments[start : start + 1000]])
    elapsed = time.perf_counter() - started
    db.close()
    return samples / elapsed


async def bench_drain(backlog: int, directory: Path, processes: c.Processes) -> dict[str, float]:
    """Fill a queue with `backlog` samples spread over the last 24 h, then time the Sender draining it to VM."""
    rounds = max(1, backlog // (200 * 20))
    step = 86400.0 / rounds
    encoder = Encoder(OFFICE)
    queue_dir = directory / "queue"
    queue = DiskQueue(queue_dir, max_bytes=8 * 2**30, max_age=30 * 86400.0, memory_bytes=512 * 2**20,
                      dead_letter_bytes=2**20)
    await queue.open()
    samples = 0
    for batch in _chunks(results(200, rounds, time.time() - 86400, step), 2000):
        fragments = [f for r in batch for f in encoder.encode(r)]
        samples += sum(f.samples for f in fragments)
        queue.append(fragments)
        await queue.sync()
    port = c.free_port()
    vm = processes.start(["victoria-metrics", f"-storageDataPath={directory / 'vm'}",
                          f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=100y", "-loggerLevel=WARN"],
                         c.RESULTS_DIR / "logs" / f"{NAME}-vm.log")
    c.wait_http(f"http://127.0.0.1:{port}/health", vm)
    config = RemoteWriteConfig.model_validate({"url": f"http://127.0.0.1:{port}/api/v1/write"})
    sender = Sender(config, queue)
    cpu_before = time.process_time()
    started = time.perf_counter()
    task = asyncio.create_task(sender.run())
    for _ in range(18_000):  # at most 30 min
        if queue.stats.samples == 0:
            break
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await queue.close()
    c.http_get_once(f"http://127.0.0.1:{port}/internal/force_flush")
    _, body = c.http_get_once(f"http://127.0.0.1:{port}/metrics")
    inserted = sum(float(m.group(1)) for m in re.finditer(
        rb'^vm_rows_inserted_total\{type="promremotewrite"\} (\S+)$', body, re.MULTILINE))
    processes.stop(vm)
    return {"samples": samples, "seconds": elapsed, "per_s": samples / elapsed, "agent_cpu_s": cpu,
            "requests": sum(sender.stats.requests.values()), "vm_rows_inserted": inserted,
            "sent": sender.stats.sent}


def bench_steady(seconds: float, warmup: float, directory: Path, processes: c.Processes) -> dict[str, Any]:
    """CPU share of one core of two agents with the same checks side by side, `push` also sending to VM."""
    logs = c.RESULTS_DIR / "logs"
    port = c.free_port()
    vm = processes.start(["victoria-metrics", f"-storageDataPath={directory / 'vm'}",
                          f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=100y", "-loggerLevel=WARN"],
                         logs / f"{NAME}-steady-vm.log")
    c.wait_http(f"http://127.0.0.1:{port}/health", vm)
    agents: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    for name, url in (("plain", None), ("push", f"http://127.0.0.1:{port}/api/v1/write")):
        config = directory / f"{name}.yaml"
        config.write_text(_steady_config(directory / f"state-{name}", url), encoding="utf-8")
        agent_port = c.free_port()
        process = processes.start(c.agent_argv(config, agent_port), logs / f"{NAME}-steady-{name}.log")
        agents[name] = (process, agent_port)
    for process, agent_port in agents.values():
        c.wait_http(f"http://127.0.0.1:{agent_port}/-/ready", process)
    time.sleep(warmup)
    sent_before = _sent(agents["push"][1])
    cpu_before = {name: c.cpu_seconds(process.pid) for name, (process, _) in agents.items()}
    started = time.monotonic()
    time.sleep(seconds)
    cpu_after = {name: c.cpu_seconds(process.pid) for name, (process, _) in agents.items()}
    wall = time.monotonic() - started
    sent, requests = _sent(agents["push"][1]), _requests(agents["push"][1])
    for name, (process, _) in agents.items():
        if process.poll() is not None:
            raise RuntimeError(f"the {name} agent exited with {process.returncode}; see {logs}")
    c.http_get_once(f"http://127.0.0.1:{port}/internal/force_flush")
    _, body = c.http_get_once(f"http://127.0.0.1:{port}/metrics")
    inserted = sum(float(m.group(1)) for m in re.finditer(
        rb'^vm_rows_inserted_total\{type="promremotewrite"\} (\S+)$', body, re.MULTILINE))
    for process, _ in agents.values():
        processes.stop(process)
    processes.stop(vm)
    percent = {name: (cpu_after[name] - cpu_before[name]) / wall * 100.0 for name in agents}
    return {"seconds": wall, "plain_cpu_percent": percent["plain"], "push_cpu_percent": percent["push"],
            "push_adds_percent": percent["push"] - percent["plain"], "samples_sent_in_window": sent - sent_before,
            "samples_per_s": (sent - sent_before) / wall, "requests_total": requests, "vm_rows_inserted": inserted,
            "checks": 1 + len(STEADY_PROCESSES)}


# Process names for the commune-like checks: some run on any Linux box, some never do (a failing check costs the
# same and pushes the same series).
STEADY_PROCESSES = ("systemd", "init", "python3", "sshd", "cron", "rsyslogd", "dbus-daemon", "victoria-metrics",
                    "nginx", "apache2", "postgres", "mysqld", "java", "smbd", "cupsd", "dnsmasq", "chronyd",
                    "ntpd", "containerd", "egov-dms")


def _steady_config(state: Path, write_url: str | None) -> str:
    intervals = ("15s", "20s", "30s")
    checks = [f"  - {{name: proc-{i}, module: proc, service: other, targets: [{name}], "
              f"interval: {intervals[i % 3]}}}" for i, name in enumerate(STEADY_PROCESSES)]
    push = f"remote_write:\n  - {{name: province, url: \"{write_url}\"}}\n" if write_url else ""
    return (f"""office: {{org_id: {OFFICE['org_id']}, name: "UBND xã Tam Xuân 1", level: commune, \
parent_id: 000.00.15.H49}}
agent: {{state_dir: {state}}}
modules:
  host: {{kind: host, timeout: 10s}}
  proc: {{kind: process, timeout: 5s}}
checks:
  - {{name: host, module: host, service: host, targets: [localhost], interval: 30s}}
""" + "\n".join(checks) + "\n" + push)


def _sent(port: int) -> float:
    return _metric_sum(port, b"egov_agent_remote_write_samples_sent_total")


def _requests(port: int) -> float:
    return _metric_sum(port, b"egov_agent_remote_write_requests_total")


def _metric_sum(port: int, name: bytes) -> float:
    _, body = c.http_get_once(f"http://127.0.0.1:{port}/metrics")
    return sum(float(m.group(1)) for m in re.finditer(rb"^" + name + rb"\{[^}]*\} (\S+)$", body, re.MULTILINE))


def _chunks(items: list[ProbeResult], size: int) -> list[list[ProbeResult]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 300k-sample backlog instead of 3M")
    parser.add_argument("--backlog", type=int, help="samples in the drain backlog")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}")
    parser.add_argument("--steady-seconds", type=float, help=f"steady window (default {STEADY_SECONDS:g}, quick 30)")
    args = parser.parse_args()
    backlog = args.backlog or (300_000 if args.quick else FULL_BACKLOG)
    phases = set(args.phases.split(","))
    if not phases <= set(PHASES):
        parser.error(f"unknown phase in {args.phases!r}")
    steady_seconds = args.steady_seconds or (30.0 if args.quick else STEADY_SECONDS)
    logging.basicConfig(level=logging.WARNING)
    if shutil.which("victoria-metrics") is None:
        print("victoria-metrics is not installed (apt-get install victoria-metrics)", file=sys.stderr)
        return 1
    processes = c.Processes()
    work = Path(tempfile.mkdtemp(prefix="bench-rw-"))
    out: dict[str, Any] = {}
    try:
        if "encode" in phases:
            out["encode"] = bench_encode(200_000 if args.quick else 1_000_000)
        if "append" in phases:
            fragments = _fragments(args.quick)
            append = asyncio.run(bench_append(fragments, work / "append"))
            out["append"] = {**append, "peer_sqlite_per_s": bench_sqlite(fragments, work / "peer.sqlite")}
        if "drain" in phases:
            drain = asyncio.run(bench_drain(backlog, work / "drain", processes))
            scale = FULL_BACKLOG / drain["samples"]
            out["drain"] = {**drain, "extrapolated_3m_seconds": drain["seconds"] * scale, "scaled": scale != 1}
        if "steady" in phases:
            (work / "steady").mkdir()
            out["steady"] = bench_steady(steady_seconds, 5.0 if args.quick else STEADY_WARMUP, work / "steady",
                                         processes)
    finally:
        processes.stop_all()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    _report(out)
    c.write_result(NAME, {**out, "goals": {"encode": GOAL_ENCODE, "append": GOAL_APPEND,
                                           "drain_seconds": GOAL_DRAIN_SECONDS, "push_percent": GOAL_PUSH_PERCENT}})
    return 0


def _report(out: dict[str, Any]) -> None:
    if "encode" in out:
        encode = out["encode"]
        c.print_table("encode + snappy (samples per CPU-second)",
                      ["", "agent", "peer (naive protobuf)", "ratio", "goal"],
                      [["samples/CPU-s", f"{encode['ours_per_cpu_s']:,.0f}", f"{encode['peer_per_cpu_s']:,.0f}",
                        c.fmt_ratio(c.ratio(encode["ours_per_cpu_s"], encode["peer_per_cpu_s"])),
                        f">= {GOAL_ENCODE:,} {'met' if encode['ours_per_cpu_s'] >= GOAL_ENCODE else 'MISSED'}"]])
    if "append" in out:
        append, peer_append = out["append"], out["append"]["peer_sqlite_per_s"]
        c.print_table("queue appends (samples per second, written to disk)",
                      ["", "agent", "peer (sqlite WAL)", "ratio", "goal"],
                      [["samples/s", f"{append['per_s']:,.0f}", f"{peer_append:,.0f}",
                        c.fmt_ratio(c.ratio(append["per_s"], peer_append)),
                        f">= {GOAL_APPEND:,} {'met' if append['per_s'] >= GOAL_APPEND else 'MISSED'}"],
                       ["loop us/append", f"{append['loop_us_per_append']:.2f}", "-", "-", "-"]])
    if "drain" in out:
        drain, drain_3m, scaled = out["drain"], out["drain"]["extrapolated_3m_seconds"], out["drain"]["scaled"]
        c.print_table("drain into VictoriaMetrics", ["", "value"],
                      [["backlog samples", f"{drain['samples']:,}"], ["seconds", f"{drain['seconds']:.1f}"],
                       ["samples/s", f"{drain['per_s']:,.0f}"], ["agent CPU s", f"{drain['agent_cpu_s']:.1f}"],
                       ["requests", f"{drain['requests']:,.0f}"],
                       ["vm rows inserted", f"{drain['vm_rows_inserted']:,.0f}"],
                       ["3M-sample drain s" + (" (extrapolated)" if scaled else ""), f"{drain_3m:.1f}"],
                       ["goal <= 300 s", "met" if drain_3m <= GOAL_DRAIN_SECONDS else "MISSED"]])
    if "steady" in out:
        steady = out["steady"]
        adds = steady["push_adds_percent"]
        c.print_table(f"steady push, {steady['checks']} checks, {steady['seconds']:.0f} s (% of one core)",
                      ["", "agent with remote_write", "peer (same agent, no push)", "ratio", "goal"],
                      [["CPU %", f"{steady['push_cpu_percent']:.3f}", f"{steady['plain_cpu_percent']:.3f}",
                        c.fmt_ratio(c.ratio(steady["push_cpu_percent"], steady["plain_cpu_percent"])), "-"],
                       ["push adds %", f"{adds:.3f}", "-", "-",
                        f"< {GOAL_PUSH_PERCENT:g} {'met' if adds < GOAL_PUSH_PERCENT else 'MISSED'}"],
                       ["samples/s pushed", f"{steady['samples_per_s']:.1f}", "-", "-", "-"],
                       ["requests (total)", f"{steady['requests_total']:.0f}", "-", "-", "-"],
                       ["vm rows inserted", f"{steady['vm_rows_inserted']:.0f}", "-", "-", "-"]])


def _fragments(quick: bool) -> list[Fragment]:
    encoder = Encoder(OFFICE)
    return [f for r in results(100, 100 if quick else 500, time.time() - 86400, 15.0) for f in encoder.encode(r)]


if __name__ == "__main__":
    sys.exit(main())
