"""CPU per varbind of the agent's if_mib walk against snmp_exporter, snmpbulkwalk and pysnmp on the same device.

Device: Debian's snmpd inside a fresh network namespace with `--interfaces` veth ends plus lo (about 100, a
province core switch's line card); everything talks over that namespace's loopback, so each measurement runs in a
worker process started with `ip netns exec` (this script again, with --worker).

  agent          `agent.runner.run_job` of the built-in if_mib (the test community), each result rendered with
                 `Exposition.update` + `body()`, N runs back to back; CPU = time.process_time() of the worker.
                 A second pass measures the event loop's longest stall (a task that yields with sleep(0) records
                 the gap between its turns: one response's decode, one render slice, ...).
  snmp_exporter  Debian's 0.21 with the oracle if_mib module, scraped N times over one kept-alive connection;
                 CPU = on-CPU time of all its threads (/proc/PID/task/*/schedstat), HTTP and text included.
  snmpbulkwalk   Net-SNMP's command, -Cr25 -m '' -On, of the same subtrees (plus snmpget of sysUpTime), N times;
                 CPU = the children's rusage (process start-up included: that is how it is used).
  pysnmp         pysnmp 7.1's bulk_walk_cmd (v3arch asyncio, lookupMib=False, lexicographicMode=False) of the
                 same subtrees, N times, one engine; CPU = time.process_time() of the worker.
And v3 (SHA-256/AES) for the agent and snmp_exporter, same module otherwise.
Varbinds are counted as snmp_scrape_pdus_returned (the same walk for every client).

Goals (issue): agent varbinds per CPU-second >= snmp_exporter's (ratio >= 1.0); no stall over 2 ms; 100 devices of
100 interfaces every 60 s <= 20% of one core.

    .venv/bin/python tests/bench/bench_snmp.py            # about 1.5 minutes
    .venv/bin/python tests/bench/bench_snmp.py --quick    # about 30 s
    .venv/bin/python tests/bench/bench_snmp.py --profile  # adds the agent's top functions (cProfile)
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

import agent.config  # noqa: F401 - imported before tests/ joins sys.path
import exporters.exposition  # noqa: F401

sys.path.append(str(c.REPO / "tests"))
from fakes.snmp import COMMUNITY, ORACLE, Snmpd, namespace

NAME = "bench_snmp"
SUBTREES = ("1.3.6.1.2.1.2", "1.3.6.1.2.1.31.1.1")
V3 = {"version": 3, "username": "usha256", "security_level": "authPriv", "auth_protocol": "SHA256",
      "priv_protocol": "AES"}
V3_PASSWORDS = ("authpass-sha256", "privpass-sha256")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs (about 30 s)")
    parser.add_argument("--interfaces", type=int, default=100, help="veth ends in the namespace (plus lo)")
    parser.add_argument("--profile", action="store_true", help="also profile the agent's runs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        outcome = WORKERS[args.worker](json.loads(args.spec))
        print(json.dumps(asyncio.run(outcome) if asyncio.iscoroutine(outcome) else outcome))
        return 0
    runs = 40 if args.quick else 200
    with tempfile.TemporaryDirectory(prefix="bench-snmp-") as tmp, namespace(args.interfaces) as netns:
        directory = Path(tmp)
        snmpd = Snmpd(directory / "snmpd", netns=netns).start()
        exporter = _start_exporter(directory, netns)
        try:
            results = _measure(netns, directory, snmpd, exporter, runs, args.profile)
        finally:
            exporter.stop()
            snmpd.stop()
    _report(results, runs, args.interfaces)
    return 0


# ---------------------------------------------------------------------------------------------- orchestration


def _measure(netns: str, directory: Path, snmpd: Snmpd, exporter: Any, runs: int, profile: bool) -> dict[str, Any]:
    (directory / "auth").write_text(V3_PASSWORDS[0], encoding="utf-8")
    (directory / "priv").write_text(V3_PASSWORDS[1], encoding="utf-8")
    # `ip netns exec` execs its command, so the Popen PID is the exporter's own.
    base = {"port": snmpd.port, "runs": runs, "exporter_port": exporter.port, "exporter_pid": exporter.process.pid}
    v3 = {**V3, "password": {"file": str(directory / "auth")}, "priv_password": {"file": str(directory / "priv")}}
    plan = [
        ("agent", "agent", {"auth": {"community": COMMUNITY}}),
        ("agent loop stalls", "agent_stalls", {"auth": {"community": COMMUNITY}}),
        ("snmp_exporter", "exporter", {"module": "if_mib"}),
        ("snmpbulkwalk", "bulkwalk", {"runs": max(runs // 4, 10)}),
        ("pysnmp", "pysnmp", {"runs": max(runs // 10, 5)}),
        ("agent v3", "agent", {"auth": v3}),
        ("snmp_exporter v3", "exporter", {"module": "if_mib_v3"}),
    ]
    if profile:
        plan.append(("agent profile", "agent_profile", {"auth": {"community": COMMUNITY}, "runs": max(runs // 4, 10)}))
    results: dict[str, Any] = {}
    for label, worker, spec in plan:
        spec = {**base, **spec}
        print(f"measuring {label} ({spec['runs']} runs) ...", flush=True)
        done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, __file__, "--worker", worker,
                               "--spec", json.dumps(spec)], capture_output=True, text=True, timeout=900,
                              cwd=c.REPO)
        if done.returncode != 0:
            raise RuntimeError(f"{label} worker failed:\n{done.stderr}")
        results[label] = json.loads(done.stdout.splitlines()[-1])
        if worker == "agent_profile":
            print(done.stderr)
    return results


def _start_exporter(directory: Path, netns: str) -> Any:
    import yaml
    from fakes.snmp import SnmpExporter

    exporter = SnmpExporter(directory, netns=netns)
    config = yaml.safe_load(ORACLE.read_text(encoding="utf-8"))
    config["if_mib"]["auth"] = {"community": COMMUNITY}
    config["if_mib_v3"] = {**config["if_mib"], "version": 3, "auth": {
        "username": V3["username"], "security_level": "authPriv", "auth_protocol": "SHA256",
        "password": V3_PASSWORDS[0], "priv_protocol": "AES", "priv_password": V3_PASSWORDS[1]}}
    exporter.config.write_text(yaml.safe_dump(config), encoding="utf-8")
    exporter.start()
    return exporter


def _report(results: dict[str, Any], runs: int, interfaces: int) -> None:
    rows = []
    for label, r in results.items():
        if "cpu_s" not in r:
            continue
        per_cpu = r["varbinds"] * r["runs"] / r["cpu_s"] if r["cpu_s"] else float("nan")
        r["varbinds_per_cpu_s"] = per_cpu
        rows.append([label, r["runs"], r["varbinds"], r["cpu_s"] / r["runs"] * 1000, per_cpu,
                     r.get("wall_s", 0) / r["runs"] * 1000])
    c.print_table(f"if_mib walk of {interfaces + 1} interfaces (snmpd in a network namespace)",
                  ["client", "runs", "varbinds/run", "CPU ms/run", "varbinds/CPU-s", "wall ms/run"], rows, 1)
    agent = results["agent"]["varbinds_per_cpu_s"]
    ratios = {
        "agent / snmp_exporter": c.ratio(agent, results["snmp_exporter"]["varbinds_per_cpu_s"]),
        "agent / snmpbulkwalk": c.ratio(agent, results["snmpbulkwalk"]["varbinds_per_cpu_s"]),
        "agent / pysnmp": c.ratio(agent, results["pysnmp"]["varbinds_per_cpu_s"]),
        "agent v3 / snmp_exporter v3": c.ratio(results["agent v3"]["varbinds_per_cpu_s"],
                                               results["snmp_exporter v3"]["varbinds_per_cpu_s"]),
    }
    c.print_table("ratios (varbinds per CPU-second, higher is better for the agent)", ["", "ratio"],
                  [[k, c.fmt_ratio(v)] for k, v in ratios.items()])
    stalls = results["agent loop stalls"]
    c.print_table("event-loop stalls during runs (CPU ms between two turns of a task yielding with sleep(0))",
                  ["pass", "gap p99", "gap max", "SNMP work max", "longest GC pause"],
                  [[name, p["gap"]["p99_ms"], p["gap"]["max_ms"], p["snmp"]["max_ms"], p["gc_max_ms"]]
                   for name, p in stalls.items()])
    worst_snmp = max(p["snmp"]["max_ms"] for p in stalls.values())
    frozen = stalls["after gc.freeze()"]["gap"]["max_ms"]
    fleet = results["agent"]["cpu_s"] / results["agent"]["runs"] * 100 / 60
    goals = [
        ["varbinds per CPU-second >= snmp_exporter's", c.fmt_ratio(ratios["agent / snmp_exporter"]),
         "met" if (ratios["agent / snmp_exporter"] or 0) >= 1.0 else "MISSED"],
        ["no SNMP response blocks the loop > 2 ms (GC aside)", f"{worst_snmp:.2f} ms",
         "met" if worst_snmp <= 2.0 else "MISSED"],
        ["longest stall with the GC, after gc.freeze()", f"{frozen:.2f} ms", "met" if frozen <= 2.0 else "MISSED"],
        ["100 devices x 100 interfaces / 60 s <= 20% of a core", f"{fleet * 100:.1f}%",
         "met" if fleet <= 0.20 else "MISSED"],
    ]
    c.print_table("goals", ["goal", "measured", ""], goals)
    c.write_result(NAME, {"runs": runs, "interfaces": interfaces + 1, "results": results, "ratios": ratios,
                          "fleet_core_share": fleet, "goals": [g[0] + ": " + g[2] for g in goals]})


# ---------------------------------------------------------------------------------------------- workers (in netns)


async def _agent(spec: dict[str, Any]) -> dict[str, Any]:
    job = _agent_job(spec)
    from agent.runner import run_job
    from exporters.exposition import Exposition

    first = await run_job(job)
    assert first.success, first.error
    varbinds = int(next(s.value for s in first.samples if s.name == "snmp_scrape_pdus_returned"))
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(spec["runs"]):
        result = await run_job(job)
        exposition = Exposition({})
        exposition.update(result)
        exposition.body()
    return {"runs": spec["runs"], "varbinds": varbinds, "cpu_s": time.process_time() - cpu,
            "wall_s": time.perf_counter() - wall, "samples": len(result.samples), "success": result.success}


async def _agent_stalls(spec: dict[str, Any]) -> dict[str, Any]:
    """Longest gaps between two turns of a yielding task, with and without the garbage collector's pauses.

    A full (generation 2) collection walks every object of the process, the agent's own included, so its pause
    grows with the heap, not with SNMP; after gc.freeze() (proposed for the agent's start-up) it only walks what
    was allocated since. Both passes are reported; "snmp" is the gap minus the collections inside it. Gaps are
    in the thread's CPU time, so being preempted by other processes on a busy machine does not count.
    """
    import gc

    job = _agent_job(spec)
    from agent.runner import run_job

    collecting = {"since": 0.0, "total": 0.0, "max": 0.0}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting["since"] = time.thread_time()
        else:
            pause = time.thread_time() - collecting["since"]
            collecting["total"] += pause
            collecting["max"] = max(collecting["max"], pause)

    async def one_pass() -> dict[str, Any]:
        gaps: list[float] = []
        work: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last, gc_before = time.thread_time(), collecting["total"]
            while not stop.is_set():
                await asyncio.sleep(0)
                now, gc_now = time.thread_time(), collecting["total"]
                gaps.append(now - last)
                work.append(now - last - (gc_now - gc_before))
                last, gc_before = now, gc_now

        previous = await run_job(job)
        collecting["max"] = 0.0
        task = asyncio.create_task(ticker())
        for _ in range(max(spec["runs"] // 4, 10)):
            result = await run_job(job)
            # Dropping a result frees its ~4,000 samples at once (about 1 ms); a store would free them in
            # slices too, so the harness does, and what remains is the run's own work.
            while previous.samples:
                del previous.samples[-1024:]
                await asyncio.sleep(0)
            previous = result
        stop.set()
        await task
        return {"ticks": len(gaps), "gap": c.summary_ms(gaps), "snmp": c.summary_ms(work),
                "gc_max_ms": collecting["max"] * 1000}

    gc.callbacks.append(on_gc)
    passes = {"as is": await one_pass()}
    gc.collect()
    gc.freeze()
    passes["after gc.freeze()"] = await one_pass()
    gc.callbacks.remove(on_gc)
    return passes


async def _agent_profile(spec: dict[str, Any]) -> dict[str, Any]:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    result = await _agent(spec)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(20)
    return result


def _agent_job(spec: dict[str, Any]) -> Any:
    from agent.config import builtin_modules
    from agent.runner import Job
    from collectors import COLLECTORS
    from collectors.snmp import SnmpSettings

    builtin_modules()  # builds the config models, so the deferred settings models can resolve SecretValue
    settings = SnmpSettings.model_validate({"include": ["if_mib"], "auth": spec["auth"]})
    return Job("bench", f"udp://127.0.0.1:{spec['port']}", "if_mib", "wan", 60.0, 30.0, COLLECTORS["snmp"],
               settings)


def _exporter(spec: dict[str, Any]) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", spec["exporter_port"], timeout=60)
    path = f"/snmp?module={spec['module']}&target=127.0.0.1:{spec['port']}"

    def scrape() -> str:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        return body

    text = scrape()
    varbinds = int(float(next(line.split()[1] for line in text.splitlines()
                              if line.startswith("snmp_scrape_pdus_returned "))))
    pid = spec["exporter_pid"]
    cpu, wall = c.cpu_seconds_fine(pid), time.perf_counter()
    for _ in range(spec["runs"]):
        scrape()
    return {"runs": spec["runs"], "varbinds": varbinds, "cpu_s": c.cpu_seconds_fine(pid) - cpu,
            "wall_s": time.perf_counter() - wall}


def _bulkwalk(spec: dict[str, Any]) -> dict[str, Any]:
    target = f"127.0.0.1:{spec['port']}"
    commands = [["snmpget", "-v2c", "-c", COMMUNITY, "-m", "", "-On", target, "1.3.6.1.2.1.1.3.0"]]
    commands += [["snmpbulkwalk", "-v2c", "-c", COMMUNITY, "-Cr25", "-m", "", "-On", target, tree]
                 for tree in SUBTREES]
    varbinds = sum(len(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines())
                   for cmd in commands)
    before, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    for _ in range(spec["runs"]):
        for cmd in commands:
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"runs": spec["runs"], "varbinds": varbinds, "cpu_s": cpu, "wall_s": time.perf_counter() - wall}


async def _pysnmp(spec: dict[str, Any]) -> dict[str, Any]:
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        bulk_walk_cmd,
        get_cmd,
    )

    engine = SnmpEngine()
    transport = await UdpTransportTarget.create(("127.0.0.1", spec["port"]), timeout=5, retries=3)
    auth = CommunityData(COMMUNITY, mpModel=1)

    async def walk_all() -> int:
        count = 0
        error, status, _, varbinds = await get_cmd(engine, auth, transport, ContextData(),
                                                   ObjectType(ObjectIdentity("1.3.6.1.2.1.1.3.0")), lookupMib=False)
        assert not error and not status, error or status
        count += len(varbinds)
        for tree in SUBTREES:
            async for error, status, _, varbinds in bulk_walk_cmd(
                    engine, auth, transport, ContextData(), 0, 25, ObjectType(ObjectIdentity(tree)),
                    lookupMib=False, lexicographicMode=False):
                assert not error and not status, error or status
                count += len(varbinds)
        return count

    varbinds = await walk_all()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(spec["runs"]):
        await walk_all()
    result = {"runs": spec["runs"], "varbinds": varbinds, "cpu_s": time.process_time() - cpu,
              "wall_s": time.perf_counter() - wall}
    engine.close_dispatcher()
    return result


WORKERS = {"agent": _agent, "agent_stalls": _agent_stalls, "agent_profile": _agent_profile, "exporter": _exporter,
           "bulkwalk": _bulkwalk, "pysnmp": _pysnmp}

if __name__ == "__main__":
    raise SystemExit(main())
