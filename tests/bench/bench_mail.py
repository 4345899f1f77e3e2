"""Time and CPU per mail probe: the agent's mail kind (and tcp's smtp_starttls/imap_starttls) against blackbox_exporter.

Target: Debian's real Postfix and Dovecot from tests/fakes/mailstack.py on 127.0.0.1 (submission with STARTTLS and
SASL, IMAP with STARTTLS). Peer: Debian's prometheus-blackbox-exporter 0.23 with its example smtp_starttls and
imap_starttls modules (the same scripts as our tcp built-ins), probed back to back with GET /probe over one
kept-alive connection; its CPU is the on-CPU time of all its threads (HTTP handling and rendering included, as it
is used), its time the probe_duration_seconds it reports. Agent: `agent.runner.run_job` in this process, back to
back, CPU from time.process_time(). Cases without a peer (blackbox cannot log in): SMTP with AUTH, IMAP with LOGIN
and SELECT, and the round trip (submit, find over IMAP, delete), whose delivery time is shown too.
No goal in the issue for probes: the table shows where the agent stands against the peer.

    .venv/bin/python tests/bench/bench_mail.py            # about 40 s
    .venv/bin/python tests/bench/bench_mail.py --quick    # about 10 s
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

from agent.config import builtin_modules
from agent.runner import Job, run_job
from collectors import mail, tcp

# After the packages: a folder under tests/ must never shadow an installed package.
sys.path.append(str(c.REPO / "tests"))
from fakes.blackbox import Blackbox
from fakes.mailstack import MailStack

NAME = "bench_mail"
PROBE = "probe@testbed.invalid"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer probes (about 10 s)")
    args = parser.parse_args()
    probes = 50 if args.quick else 300
    workdir = Path(tempfile.mkdtemp(prefix="bench-mail-"))
    results: dict[str, Any] = {}
    blackbox: Blackbox | None = None
    with MailStack() as stack:
        try:
            secret = workdir / "password"
            secret.write_text(stack.password(PROBE), encoding="utf-8")
            ca = str(stack.cert_file)
            peer_modules = _blackbox_modules(ca)
            blackbox = Blackbox(workdir, peer_modules).start()
            auth = {"username": PROBE, "password": {"file": str(secret)}}
            tls = {"ca_file": ca}
            submission, imap = stack.target("submission"), stack.target("imap")
            cases: list[tuple[str, Any, Any, str, str | None]] = [
                ("smtp_starttls", tcp.SPEC, tcp.TcpSettings.model_validate(peer_modules["smtp_starttls"]["tcp"]),
                 submission, "smtp_starttls"),
                ("mail smtp starttls", mail.SPEC, _mail({"protocol": "smtp", "tls_config": tls}), submission,
                 "smtp_starttls"),
                ("mail smtp + AUTH", mail.SPEC, _mail({"protocol": "smtp", "tls_config": tls, "auth": auth}),
                 submission, None),
                ("imap_starttls", tcp.SPEC, tcp.TcpSettings.model_validate(peer_modules["imap_starttls"]["tcp"]),
                 imap, "imap_starttls"),
                ("mail imap starttls", mail.SPEC, _mail({"protocol": "imap", "tls_config": tls}), imap,
                 "imap_starttls"),
                ("mail imap + LOGIN, SELECT", mail.SPEC, _mail({"protocol": "imap", "tls_config": tls,
                                                                "auth": auth}), imap, None),
                ("mail roundtrip", mail.SPEC, _mail({"protocol": "roundtrip", "tls_config": tls, "auth": auth,
                                                     "roundtrip": {"imap_server": imap}}), submission, None),
            ]
            peer_cache: dict[str, dict[str, Any]] = {}
            for label, spec, settings, target, peer in cases:
                count = max(10, probes // 5) if "roundtrip" in label else probes
                ours = asyncio.run(_agent(label, spec, settings, target, count))
                row: dict[str, Any] = {"agent": ours}
                if peer is not None:
                    if peer not in peer_cache:
                        peer_cache[peer] = c.blackbox_probe_cost(blackbox, peer, target, probes, warmup=5)
                    row["blackbox"] = peer_cache[peer]
                    row["cpu_ratio"] = c.ratio(ours["cpu_ms"], peer_cache[peer]["cpu_ms"])
                results[label] = row
        finally:
            if blackbox is not None:
                blackbox.stop()
    rows = []
    for label, row in results.items():
        ours = row["agent"]
        rows.append([label, "agent", ours["time"]["p50_ms"], ours["time"]["p99_ms"], ours["cpu_ms"],
                     c.fmt_ratio(row.get("cpu_ratio")) if "blackbox" in row else "", ours.get("delivery_p50_ms")])
        if "blackbox" in row:
            theirs = row["blackbox"]
            rows.append(["", "blackbox", theirs["time"]["p50_ms"], theirs["time"]["p99_ms"], theirs["cpu_ms"], "",
                         None])
    c.print_table(f"{probes} probes back to back per case (round trip: {max(10, probes // 5)}); CPU vs peer = "
                  "agent CPU / blackbox CPU (below 1 is better)",
                  ["case", "prober", "p50 ms", "p99 ms", "CPU ms/probe", "CPU vs peer", "delivery p50 ms"], rows,
                  digits=3)
    c.write_result(NAME, {"probes": probes, "results": results})
    return 0


def _mail(body: dict[str, Any]) -> mail.MailSettings:
    return mail.MailSettings.model_validate(body)


def _blackbox_modules(ca_file: str) -> dict[str, Any]:
    modules = {}
    for name in ("smtp_starttls", "imap_starttls"):
        script = [step.model_dump(mode="json", exclude_defaults=True)
                  for step in builtin_modules()[name].tcp.query_response]
        modules[name] = {"prober": "tcp", "timeout": "5s",
                         "tcp": {"query_response": script, "tls_config": {"ca_file": ca_file}}}
    return modules


async def _agent(label: str, spec: Any, settings: Any, target: str, probes: int) -> dict[str, Any]:
    job = Job("bench", target, label, "mail", 60.0, 10.0, spec, settings)
    for _ in range(5):
        await run_job(job)
    durations, deliveries = [], []
    cpu = time.process_time()
    for _ in range(probes):
        result = await run_job(job)
        if not result.success:
            raise RuntimeError(f"{label}: {result.error}")
        durations.append(result.duration)
        deliveries += [s.value for s in result.samples if s.name == "egov_mail_roundtrip_delivery_seconds"]
    out: dict[str, Any] = {"time": c.summary_ms(durations),
                           "cpu_ms": (time.process_time() - cpu) / probes * 1000}
    if deliveries:
        out["delivery_p50_ms"] = c.summary_ms(deliveries)["p50_ms"]
    return out


if __name__ == "__main__":
    sys.exit(main())
