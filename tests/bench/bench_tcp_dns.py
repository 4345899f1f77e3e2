"""Time and CPU per tcp and dns probe: the agent's tcp/dns kinds against blackbox_exporter's tcp/dns probers.

Targets run outside both probers: a child Python process serves a plain TCP port and an ESMTP server with STARTTLS
(tests/fakes/tcp.py, trustme certificate), and Debian's dnsmasq answers DNS (tests/fakes/dns.py), all on 127.0.0.1.
Peer: Debian's prometheus-blackbox-exporter with the same modules, probed back to back with GET /probe over one
kept-alive connection; its CPU is the on-CPU time of all its threads (/proc/PID/task/*/schedstat), HTTP handling
and text rendering included, since that is how it is used; its time is the probe_duration_seconds it reports.
Agent: in this process, `agent.runner.run_job` back to back, each result rendered with `Exposition.update` (the
agent's per-run work; scheduling excluded), CPU from time.process_time(); then 100 runs started at once.
Cases: tcp_connect; smtp_starttls (banner, EHLO, STARTTLS, TLS 1.3 handshake, EHLO, QUIT); dns A over UDP.
No goal in the issue for these kinds: the table shows where the agent stands against the peer.

    .venv/bin/python tests/bench/bench_tcp_dns.py            # about 10 s
    .venv/bin/python tests/bench/bench_tcp_dns.py --quick    # about 5 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import _common as c

from agent.config import builtin_modules
from agent.runner import Job, run_job
from collectors import dns as dns_kind
from collectors import tcp
from exporters.exposition import Exposition

# After the packages: a folder under tests/ must never shadow an installed package.
sys.path.append(str(c.REPO / "tests"))
from fakes.blackbox import Blackbox
from fakes.dns import Dnsmasq

NAME = "bench_tcp_dns"
SERVERS = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    sys.path.append(sys.argv[2])
    from fakes.tcp import ScriptedServer, make_certs, smtp_script
    async def main():
        certs = make_certs(Path(sys.argv[1]))
        async with ScriptedServer([("wait",)]) as plain, \\
                ScriptedServer(smtp_script(), starttls=certs.server_context()) as smtp:
            print(json.dumps({"plain": plain.port, "smtp": smtp.port, "ca": str(certs.ca_file)}), flush=True)
            await asyncio.Event().wait()
    asyncio.run(main())
""")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer probes (about 5 s)")
    args = parser.parse_args()
    probes = 200 if args.quick else 1000
    processes = c.Processes()
    workdir = Path(tempfile.mkdtemp(prefix="bench-tcp-dns-"))
    dnsmasq = Dnsmasq(workdir)
    blackbox: Blackbox | None = None
    try:
        servers = processes.start([sys.executable, "-c", SERVERS, str(workdir), str(c.REPO / "tests")],
                                  c.RESULTS_DIR / "logs" / f"{NAME}-servers.log")
        ports = _read_ports(servers)
        dnsmasq.start()
        modules = _modules(ports["ca"])
        blackbox = Blackbox(workdir, modules).start()
        cases = {"tcp_connect": f"127.0.0.1:{ports['plain']}", "smtp_starttls": f"127.0.0.1:{ports['smtp']}",
                 "dns_udp_a": dnsmasq.target}
        results: dict[str, Any] = {}
        for module, target in cases.items():
            ours = asyncio.run(_agent(module, modules[module], target, probes))
            theirs = c.blackbox_probe_cost(blackbox, module, target, probes, warmup=20)
            results[module] = {"agent": ours, "blackbox": theirs,
                               "cpu_ratio": c.ratio(ours["cpu_ms"], theirs["cpu_ms"]),
                               "p50_ratio": c.ratio(ours["time"]["p50_ms"], theirs["time"]["p50_ms"])}
    finally:
        if blackbox is not None:
            blackbox.stop()
        dnsmasq.stop()
        processes.stop_all()
    rows = []
    for module, row in results.items():
        for side in ("agent", "blackbox"):
            r = row[side]
            rows.append([module if side == "agent" else "", side, r["time"]["p50_ms"], r["time"]["p99_ms"],
                         r["cpu_ms"], c.fmt_ratio(row["cpu_ratio"]) if side == "agent" else "",
                         r.get("burst100_ms", None)])
    c.print_table(f"{probes} probes back to back per case (time: the probe's own duration)",
                  ["case", "prober", "p50 ms", "p99 ms", "CPU ms/probe", "CPU vs peer", "100 at once ms"], rows,
                  digits=3)
    c.write_result(NAME, {"probes": probes, "results": results})
    return 0


def _modules(ca_file: str) -> dict[str, Any]:
    smtp = [step.model_dump(mode="json", exclude_defaults=True)
            for step in builtin_modules()["smtp_starttls"].tcp.query_response]
    return {
        "tcp_connect": {"prober": "tcp", "timeout": "5s", "tcp": {}},
        "smtp_starttls": {"prober": "tcp", "timeout": "5s",
                          "tcp": {"query_response": smtp, "tls_config": {"ca_file": ca_file}}},
        "dns_udp_a": {"prober": "dns", "timeout": "5s",
                      "dns": {"query_name": "web.testbed.invalid", "query_type": "A"}},
    }


def _read_ports(servers: subprocess.Popen[bytes]) -> dict[str, Any]:
    log = c.RESULTS_DIR / "logs" / f"{NAME}-servers.log"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if servers.poll() is not None:
            raise RuntimeError(f"the target servers exited: {log.read_text()}")
        with contextlib.suppress(OSError, ValueError, IndexError):  # not written (completely) yet
            first = log.read_text().splitlines()[0]
            return dict(json.loads(first))
        time.sleep(0.1)
    raise RuntimeError("the target servers did not start")


async def _agent(module: str, body: dict[str, Any], target: str, probes: int) -> dict[str, Any]:
    if body["prober"] == "tcp":
        spec, settings = tcp.SPEC, tcp.TcpSettings.model_validate(body["tcp"])
    else:
        spec, settings = dns_kind.SPEC, dns_kind.DnsSettings.model_validate(body["dns"])
    job = Job("bench", target, module, "other", 60.0, 5.0, spec, settings)
    exposition = Exposition({"org_id": "000.00.20.H49", "level": "commune"})
    for _ in range(20):
        exposition.update(await run_job(job))
    durations = []
    cpu = time.process_time()
    for _ in range(probes):
        result = await run_job(job)
        exposition.update(result)
        if not result.success:
            raise RuntimeError(f"{module}: {result.error}")
        durations.append(result.duration)
    cpu_ms = (time.process_time() - cpu) / probes * 1000
    started = time.perf_counter()
    burst = await asyncio.gather(*(run_job(job) for _ in range(100)))
    burst_ms = (time.perf_counter() - started) * 1000
    if not all(r.success for r in burst):
        raise RuntimeError(f"{module}: a concurrent run failed")
    return {"time": c.summary_ms(durations), "cpu_ms": cpu_ms, "burst100_ms": burst_ms}


if __name__ == "__main__":
    sys.exit(main())
