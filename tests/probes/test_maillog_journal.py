"""maillog reading the systemd journal: real journal files written by Debian's systemd-journald, read by journalctl.

journald runs in a private mount namespace (tmpfs over /run/systemd and /run/log, so the host is untouched), gets
entries through its native socket (`logger --journald`), is stopped by PID, and its journal file is copied out; the
collector then reads that directory with `journalctl --directory`.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from agent.runner import Job, ProbeResult, run_job
from collectors import COLLECTORS
from collectors.maillog import JournalSettings, MaillogSettings

A, B = "000.00.20.H49", "000.00.21.H49"
pytestmark = pytest.mark.slow

_SCRIPT = r"""
set -eu
out=$1; name=$2; shift 2
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/log && mount -t tmpfs tmpfs /run/log
mkdir -p /run/systemd/journal
/lib/systemd/systemd-journald & jpid=$!
for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
for entry in "$@"; do printf '%s\n' "$entry" | logger --journald; done
sleep 0.3
kill "$jpid"; wait "$jpid" || true
cp /run/log/journal/*/system.journal "$out/$name"
"""


def write_journal(directory: Path, name: str, entries: list[dict[str, str]]) -> None:
    """A journal file in `directory` holding `entries` (fields of each), written by a real journald."""
    texts = ["\n".join(f"{key}={value}" for key, value in entry.items()) for entry in entries]
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", _SCRIPT, "journal",
                           str(directory), name, *texts], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert (directory / name).exists()


def submission(account: str, queue_id: str) -> dict[str, str]:
    return {"SYSLOG_IDENTIFIER": "postfix/submission/smtpd", "SYSLOG_PID": "4242",
            "MESSAGE": f"{queue_id}: client=unknown[10.49.20.5], sasl_method=PLAIN, sasl_username={account}"}


def delivery(to: str, queue_id: str) -> dict[str, str]:
    return {"SYSLOG_IDENTIFIER": "postfix/virtual", "SYSLOG_PID": "4243",
            "MESSAGE": f"{queue_id}: to=<{to}>, relay=virtual, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, "
                       "status=sent (delivered to maildir)"}


def imap_login(account: str) -> dict[str, str]:
    return {"SYSLOG_IDENTIFIER": "dovecot", "SYSLOG_PID": "812",
            "MESSAGE": f"imap-login: Login: user=<{account}>, method=PLAIN, rip=10.49.20.6, lip=10.49.0.25, TLS"}


def values(result: ProbeResult, name: str) -> dict[tuple[str, ...], float]:
    return {tuple(value for _, value in sample.labels): sample.value
            for sample in result.samples if sample.name == name}


def test_journal_entries_are_counted_once_across_runs(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    write_journal(journal, "one.journal", [submission("an@sonoivu.invalid", "AAA111"),
                                           delivery("x@stc.invalid", "AAA111"), imap_login("binh@sonoivu.invalid")])
    settings = MaillogSettings(journal=JournalSettings(directory=str(journal), units=[]),
                               domains={"sonoivu.invalid": A, "stc.invalid": B})
    job = Job("mail-usage", "mail.invalid", "mail_usage", "mail", 60.0, 20.0, COLLECTORS["maillog"], settings,
              state_dir=str(tmp_path / "state"))
    first = asyncio.run(run_job(job))
    write_journal(journal, "two.journal", [submission("chi@stc.invalid", "BBB222"),
                                           delivery("y@stc.invalid", "BBB222")])
    second = asyncio.run(run_job(job))
    third = asyncio.run(run_job(job))

    assert first.success, first.error
    assert values(first, "egov_mail_active_accounts")[(A, "1d")] == 2
    assert values(first, "egov_mail_active_accounts")[(B, "1d")] == 0
    assert values(first, "egov_mail_deliveries_total")[("sent",)] == 1
    assert second.success, second.error
    assert values(second, "egov_mail_active_accounts")[(A, "1d")] == 2
    assert values(second, "egov_mail_active_accounts")[(B, "1d")] == 1
    assert values(second, "egov_mail_deliveries_total")[("sent",)] == 2
    assert values(third, "egov_mail_log_lines_total") == values(second, "egov_mail_log_lines_total")
    assert values(third, "egov_mail_log_lines_total")[("parsed",)] == 5


def test_a_journal_that_cannot_be_read_fails_with_journalctl_s_words(tmp_path: Path) -> None:
    settings = MaillogSettings(journal=JournalSettings(directory=str(tmp_path / "absent")), domains={"a.invalid": A})
    job = Job("mail-usage", "mail.invalid", "mail_usage", "mail", 60.0, 10.0, COLLECTORS["maillog"], settings,
              state_dir=str(tmp_path / "state"))
    result = asyncio.run(run_job(job))
    assert not result.success
    assert result.error.startswith("cannot read the journal: journalctl exited with status 1")
