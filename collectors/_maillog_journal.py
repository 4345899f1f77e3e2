"""The systemd journal as a mail log source: `journalctl -o json` after a saved cursor, each entry as a syslog line.

Entries become `YYYY-MM-DDTHH:MM:SS HOST IDENTIFIER[PID]: MESSAGE` (local time, as rsyslog's RFC 3339 format), so the
same parser reads them. The cursor of the last entry fed is kept; a run stops at its line budget or deadline and the
next run continues after that cursor. journalctl is started per run and stopped by its PID when the run stops early.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import IO, Any

from collectors._maillog_files import MAX_LINE_BYTES, Budget, Feed

JOURNALCTL = "journalctl"
MAX_ENTRY_BYTES = 1 << 20
_BATCH = 2000
_STOP_SECONDS = 5.0


@dataclass(slots=True)
class JournalReport:
    """What one read_journal call did."""

    lines: int = 0
    too_long: int = 0
    error: str = ""


def read_journal(directory: str | None, units: list[str], cursor: str | None, feed: Feed, budget: Budget,
                 start_at_end: bool = False) -> tuple[str | None, JournalReport]:
    """Feed the entries after `cursor` (none: those of the last 30 days, or none with start_at_end); new cursor."""
    report = JournalReport()
    base = [JOURNALCTL, "--output=json", "--all", "--no-pager", "--quiet"]
    if directory:
        base.append(f"--directory={directory}")
    base += [f"--unit={unit}" for unit in units]
    if cursor is None and start_at_end:
        return _last_cursor(base, report), report
    since = ([f"--after-cursor={cursor}"] if cursor
             else [f"--since={(date.today() - timedelta(days=30)).isoformat()}"])
    try:
        process = subprocess.Popen([*base, *since], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
    except OSError as err:
        report.error = f"cannot start {JOURNALCTL}: {err.strerror or err}"
        return cursor, report
    # The deadline also holds while journalctl is slow to write: then it is killed and the read ends.
    watchdog = threading.Timer(max(0.0, budget.deadline - time.monotonic()), process.kill)
    watchdog.start()
    stopped = False
    try:
        assert process.stdout is not None
        cursor, stopped = _feed_entries(process.stdout, cursor, feed, budget, report)
    finally:
        watchdog.cancel()
        _stop(process)
        assert process.stderr is not None
        problem = process.stderr.read(500).decode("utf-8", "replace").strip()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    if not stopped and process.returncode not in (0, -9):
        report.error = f"{JOURNALCTL} exited with status {process.returncode}: {problem}"
    return cursor, report


def _feed_entries(stream: IO[bytes], cursor: str | None, feed: Feed, budget: Budget,
                  report: JournalReport) -> tuple[str | None, bool]:
    batch: list[bytes] = []
    skipping = False
    while True:
        raw = stream.readline(MAX_ENTRY_BYTES)
        if not raw:
            break
        if not raw.endswith(b"\n") and len(raw) >= MAX_ENTRY_BYTES:
            if not skipping:
                report.too_long += 1
            skipping = True
            continue
        if skipping:  # the tail of an entry too long to keep
            skipping = False
            continue
        if not budget.take(1):
            _flush(batch, feed, report)
            return cursor, True
        try:
            entry = json.loads(raw)
            line = _as_line(entry)
            next_cursor = str(entry["__CURSOR"])
        except (ValueError, KeyError, TypeError):
            report.too_long += 1  # counted with the malformed lines
            continue
        cursor = next_cursor
        if len(line) > MAX_LINE_BYTES:
            report.too_long += 1
        else:
            batch.append(line)
        if len(batch) >= _BATCH:
            _flush(batch, feed, report)
    _flush(batch, feed, report)
    return cursor, False


def _flush(batch: list[bytes], feed: Feed, report: JournalReport) -> None:
    if batch:
        feed(batch)
        report.lines += len(batch)
        batch.clear()


def _as_line(entry: dict[str, Any]) -> bytes:
    when = datetime.fromtimestamp(int(entry["__REALTIME_TIMESTAMP"]) / 1e6).strftime("%Y-%m-%dT%H:%M:%S")
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # not valid UTF-8: journalctl gives the bytes
        text = bytes(message)
    elif isinstance(message, str):
        text = message.encode("utf-8", "surrogateescape")
    else:
        text = b""
    ident = str(entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or "unknown")
    pid = str(entry.get("SYSLOG_PID") or entry.get("_PID") or "0")
    host = str(entry.get("_HOSTNAME") or "localhost")
    head = f"{when} {host} {ident}[{pid}]: ".encode("utf-8", "surrogateescape")
    return head + text.replace(b"\n", b" ")


def _last_cursor(base: list[str], report: JournalReport) -> str | None:
    try:
        done = subprocess.run([*base, "--lines=1"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        report.error = f"{JOURNALCTL}: {err}"
        return None
    for raw in done.stdout.splitlines()[-1:]:
        try:
            return str(json.loads(raw)["__CURSOR"])
        except (ValueError, KeyError, TypeError):
            return None
    return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_SECONDS)
