"""Mail log parsing: lines per CPU-second with flat memory, side by side with pflogsumm on the same Postfix log.

Generates a realistic Postfix (+ Dovecot) syslog file of about 1M lines over 7 days ending today (submissions with
SASL, inbound mail, local and remote deliveries sent / deferred / bounced, NOQUEUE rejects, SASL failures, TLS and
connect lines, IMAP logins), then:
- runs the maillog collector over it in-process (`run_job`, a fresh state dir: reading, parsing, hashing accounts,
  saving the state), CPU from time.process_time, VmRSS sampled every 20 ms;
- the same on a tenth of the file, to show memory does not grow with the log;
- the parser alone with per-day counts (the collector's read_log + LogParser), to compare with pflogsumm;
- Debian's pflogsumm on the same file (CPU of the child), and checks its Per-Day "delivered" column against ours.

Goal (issue 5): >= 200k lines per CPU-second with constant memory; per-day sent counts agree with pflogsumm; faster.
Run: /work/venv/bin/python tests/bench/bench_maillog.py [--quick] [--lines N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

from _common import MIB, fmt_ratio, print_table, rss_bytes, write_result

from agent.runner import Job, run_job
from collectors import COLLECTORS
from collectors._maillog_files import Budget, read_log
from collectors._maillog_parse import DELIVERIES, LogParser
from collectors.maillog import MaillogSettings

GOAL_LINES_PER_CPU_SECOND = 200_000
DAYS = 7
ACCOUNTS_PER_DOMAIN = 500
"""10,000 accounts in 20 agencies: a province's mail system; both logs touch nearly all of them."""
DOMAINS = {f"so{i}.quangnam.invalid": f"000.00.{20 + i:02d}.H49" for i in range(20)}


def generate(path: Path, target_lines: int, seed: int = 5) -> int:
    """Write a Postfix/Dovecot syslog of about `target_lines` lines over DAYS days ending today; returns lines."""
    rnd = random.Random(seed)
    domains = list(DOMAINS)
    today = date.today()
    per_day = target_lines // DAYS
    written = 0
    queue = 0x10000
    with path.open("w", encoding="utf-8") as out:
        for day_index in range(DAYS):
            day = today - timedelta(days=DAYS - 1 - day_index)
            prefix_day = f"{day:%b} {day.day:2d}"
            day_lines = 0
            second = 0
            while day_lines < per_day:
                second = min(86399, second + rnd.randint(0, 2))
                ts = f"{prefix_day} {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d} mail"
                queue += 1
                qid = f"{queue:X}"
                pid = rnd.randint(1000, 60000)
                ip = f"10.49.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
                user = f"cb{rnd.randint(1, ACCOUNTS_PER_DOMAIN)}@{rnd.choice(domains)}"
                lines: list[str] = []
                kind = rnd.random()
                if kind < 0.05:
                    lines.append(f"{ts} postfix/smtpd[{pid}]: NOQUEUE: reject: RCPT from unknown[{ip}]: 554 5.7.1 "
                                 f"<spam@x.invalid>: Relay access denied; from=<a@b.invalid> to=<c@d.invalid> "
                                 f"proto=ESMTP helo=<x>")
                elif kind < 0.07:
                    lines.append(f"{ts} postfix/submission/smtpd[{pid}]: warning: unknown[{ip}]: SASL LOGIN "
                                 f"authentication failed: UGFzc3dvcmQ6")
                elif kind < 0.30:
                    lines.append(f"{ts} dovecot: imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, "
                                 f"lip=10.49.0.25, mpid={pid}, TLS, session=<k{queue:x}>")
                    lines.append(f"{ts} dovecot: imap({user})<{pid}><k{queue:x}>: Disconnected: Logged out in=120 "
                                 f"out=4000 deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0")
                else:
                    submission = kind < 0.70
                    service = "postfix/submission/smtpd" if submission else "postfix/smtpd"
                    lines.append(f"{ts} {service}[{pid}]: connect from unknown[{ip}]")
                    lines.append(f"{ts} {service}[{pid}]: Anonymous TLS connection established from unknown[{ip}]: "
                                 f"TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)")
                    sender = user if submission else f"ext{rnd.randint(1, 500)}@partner.invalid"
                    auth = f", sasl_method=PLAIN, sasl_username={user}" if submission else ""
                    lines.append(f"{ts} {service}[{pid}]: {qid}: client=unknown[{ip}]{auth}")
                    lines.append(f"{ts} postfix/cleanup[{pid + 1}]: {qid}: message-id=<{qid}.{pid}@mail>")
                    recipients = rnd.choice((1, 1, 1, 2, 3))
                    lines.append(f"{ts} postfix/qmgr[999]: {qid}: from=<{sender}>, size={rnd.randint(900, 90000)}, "
                                 f"nrcpt={recipients} (queue active)")
                    for _ in range(recipients):
                        outcome = rnd.random()
                        if outcome < 0.6:
                            to = f"cb{rnd.randint(1, 3000)}@{rnd.choice(domains)}"
                            lines.append(f"{ts} postfix/virtual[{pid + 2}]: {qid}: to=<{to}>, relay=virtual, "
                                         f"delay=0.11, delays=0.05/0.01/0/0.05, dsn=2.0.0, status=sent "
                                         f"(delivered to maildir)")
                        elif outcome < 0.9:
                            remote = f"x{rnd.randint(1, 99)}@gmail.invalid"
                            lines.append(f"{ts} postfix/smtp[{pid + 3}]: {qid}: to=<{remote}>, "
                                         f"relay=mx.gmail.invalid[192.0.2.7]:25, delay=1.2, delays=0.1/0/0.4/0.7, "
                                         f"dsn=2.0.0, status=sent (250 2.0.0 OK 1700000000 x)")
                        elif outcome < 0.97:
                            lines.append(f"{ts} postfix/smtp[{pid + 3}]: {qid}: to=<y@slow.invalid>, relay=none, "
                                         f"delay=30, delays=0.1/0/30/0, dsn=4.4.1, status=deferred (connect to "
                                         f"slow.invalid[192.0.2.9]:25: Connection timed out)")
                        else:
                            lines.append(f"{ts} postfix/smtp[{pid + 3}]: {qid}: to=<z@gone.invalid>, "
                                         f"relay=mx.gone.invalid[192.0.2.8]:25, delay=0.5, delays=0.1/0/0.2/0.2, "
                                         f"dsn=5.1.1, status=bounced (host said: 550 5.1.1 User unknown)")
                    lines.append(f"{ts} {service}[{pid}]: disconnect from unknown[{ip}] ehlo=2 starttls=1 auth=1 "
                                 f"mail=1 rcpt={recipients} data=1 quit=1 commands=8")
                    lines.append(f"{ts} postfix/qmgr[999]: {qid}: removed")
                out.write("\n".join(lines) + "\n")
                day_lines += len(lines)
            written += day_lines
    return written


class RssSampler:
    """Samples this process's VmRSS every 20 ms in a thread; peak and start."""

    def __init__(self) -> None:
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes())


def run_collector(log: Path, state_dir: Path) -> dict[str, float]:
    """One maillog run over the whole file from a fresh state; CPU, wall time, RSS and lines."""
    settings = MaillogSettings(files=[str(log)], domains=DOMAINS, max_lines_per_run=100_000_000)
    job = Job("bench", "mail.invalid", "bench", "mail", 3600.0, 3600.0, COLLECTORS["maillog"], settings,
              state_dir=str(state_dir))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with RssSampler() as rss:
        result = asyncio.run(run_job(job))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if not result.success:
        raise RuntimeError(f"maillog run failed: {result.error}")
    lines = sum(s.value for s in result.samples if s.name == "egov_mail_log_lines_total")
    return {"lines": lines, "cpu_s": cpu, "wall_s": wall, "lines_per_cpu_s": lines / cpu,
            "rss_start_mib": rss.start / MIB, "rss_peak_mib": rss.peak / MIB,
            "rss_growth_mib": (rss.peak - rss.start) / MIB}


def our_per_day(log: Path) -> tuple[dict[str, int], float]:
    """Per-day delivered (status=sent) counts from the collector's reader and parser; and the CPU it took."""
    parser = LogParser(lambda *_: None, by_day=True)
    cpu0 = time.process_time()
    read_log(log, None, parser.feed, Budget(100_000_000, time.monotonic() + 3600))
    cpu = time.process_time() - cpu0
    assert parser.by_day is not None
    per_day = {date.fromordinal(day).isoformat(): count for (day, metric, label), count in parser.by_day.items()
               if metric == DELIVERIES and label == "sent"}
    return per_day, cpu


def pflogsumm_per_day(log: Path) -> tuple[dict[str, int], float, float]:
    """pflogsumm's Per-Day 'delivered' column, its CPU (user+sys of the child) and wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    done = subprocess.run(["pflogsumm", "--iso-date-time", "--problems-first", str(log)], capture_output=True,
                          text=True, timeout=1800, check=True)
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    per_day: dict[str, int] = {}
    section = done.stdout.split("Per-Day Traffic Summary", 1)[1]
    for line in section.splitlines():
        m = re.match(r"\s+(\d{4}-\d\d-\d\d)\s+(\d+)([km ]?)\s+(\d+)([km ]?)", line)
        if m:
            if m.group(5).strip():
                raise RuntimeError(f"pflogsumm abbreviated a count: {line!r}")
            per_day[m.group(1)] = int(m.group(4))
        elif per_day and not line.strip():
            break
    return per_day, cpu, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200k lines instead of 1M")
    parser.add_argument("--lines", type=int, default=0, help="lines to generate (default 1M, --quick 200k)")
    args = parser.parse_args()
    target = args.lines or (200_000 if args.quick else 1_000_000)
    if shutil.which("pflogsumm") is None:
        print("pflogsumm is not installed (Debian package pflogsumm)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-maillog-"))
    try:
        log = work / "mail.log"
        t0 = time.perf_counter()
        lines = generate(log, target)
        small = work / "small.log"
        generate(small, target // 10, seed=6)
        print(f"generated {lines} lines ({log.stat().st_size / MIB:.0f} MiB) in {time.perf_counter() - t0:.1f}s")

        small_run = run_collector(small, work / "state-small")
        full_run = run_collector(log, work / "state-full")
        ours, parse_cpu = our_per_day(log)
        theirs, pfl_cpu, pfl_wall = pflogsumm_per_day(log)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    agree = ours == theirs
    print_table("maillog collector, one run over the whole log (fresh state)",
                ["log", "lines", "CPU s", "wall s", "lines/CPU-s", "RSS start MiB", "RSS peak MiB", "growth MiB"],
                [[name, int(r["lines"]), r["cpu_s"], r["wall_s"], f"{r['lines_per_cpu_s']:,.0f}", r["rss_start_mib"],
                  r["rss_peak_mib"], r["rss_growth_mib"]] for name, r in (("1/10", small_run), ("full", full_run))])
    print_table("side by side with pflogsumm (same file)", ["tool", "CPU s", "lines/CPU-s", "ratio (pflogsumm/ours)"],
                [["maillog parser (per-day counts)", parse_cpu, f"{lines / parse_cpu:,.0f}",
                  fmt_ratio(pfl_cpu / parse_cpu)],
                 ["maillog collector (full run)", full_run["cpu_s"], f"{full_run['lines_per_cpu_s']:,.0f}",
                  fmt_ratio(pfl_cpu / full_run["cpu_s"])],
                 ["pflogsumm", pfl_cpu, f"{lines / pfl_cpu:,.0f}", "1x"]])
    print_table("per-day delivered (status=sent)", ["day", "ours", "pflogsumm", "agree"],
                [[day, ours.get(day, 0), theirs.get(day, 0), "yes" if ours.get(day) == theirs.get(day) else "NO"]
                 for day in sorted(set(ours) | set(theirs))])
    rate_ok = full_run["lines_per_cpu_s"] >= GOAL_LINES_PER_CPU_SECOND
    flat = full_run["rss_growth_mib"] < 20
    faster = full_run["cpu_s"] < pfl_cpu
    print(f"\ngoal >= {GOAL_LINES_PER_CPU_SECOND:,} lines/CPU-s: {'met' if rate_ok else 'MISSED'}; "
          f"RSS growth over a {lines:,}-line log {full_run['rss_growth_mib']:.1f} MiB (1/10 of it: "
          f"{small_run['rss_growth_mib']:.1f} MiB): {'flat' if flat else 'NOT flat'}; per-day sent counts "
          f"{'agree' if agree else 'DISAGREE'} with pflogsumm; {'faster' if faster else 'SLOWER'} than pflogsumm "
          f"(pflogsumm needs {fmt_ratio(pfl_cpu / full_run['cpu_s'])} our CPU time)")
    write_result("bench_maillog", {
        "lines": lines, "collector_small": small_run, "collector_full": full_run, "parser_cpu_s": parse_cpu,
        "pflogsumm_cpu_s": pfl_cpu, "pflogsumm_wall_s": pfl_wall, "per_day_ours": ours, "per_day_pflogsumm": theirs,
        "agree": agree, "goal_lines_per_cpu_s": GOAL_LINES_PER_CPU_SECOND,
        "goal_met": rate_ok and flat and agree and faster,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
