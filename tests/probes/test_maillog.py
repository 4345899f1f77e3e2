"""The maillog kind end to end without mail daemons: agencies, windows, state on disk, restarts, bad input."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.errors import ConfigError, Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import COLLECTORS
from collectors.maillog import MaillogSettings

SPEC = COLLECTORS["maillog"]
A, B, HQ = "000.00.20.H49", "000.00.21.H49", "000.00.01.H49"
DOMAINS = {"sonoivu.invalid": A, "stc.invalid": B}


def stamp(day: date, hms: str = "10:00:00") -> str:
    """A BSD syslog timestamp, as Postfix and Dovecot write it."""
    return f"{day:%b} {day.day:2d} {hms}"


def sent(day: date, account: str, queue_id: str = "ABC123") -> str:
    return (f"{stamp(day)} mail postfix/submission/smtpd[100]: {queue_id}: client=unknown[10.49.20.5], "
            f"sasl_method=PLAIN, sasl_username={account}\n")


def delivered(day: date, to: str, status: str = "sent") -> str:
    return (f"{stamp(day)} mail postfix/virtual[101]: ABC123: to=<{to}>, relay=virtual, delay=0.1, "
            f"delays=0/0/0/0.1, dsn=2.0.0, status={status} (delivered to maildir)\n")


def read(day: date, account: str, protocol: str = "imap") -> str:
    return (f"{stamp(day)} mail dovecot: {protocol}-login: Login: user=<{account}>, method=PLAIN, rip=10.49.20.5, "
            f"lip=10.49.0.25, mpid=4242, TLS, session=<abc>\n")


def job(settings: MaillogSettings, state_dir: Path | str, timeout: float = 10.0, check: str = "mail-usage") -> Job:
    return Job(check, "mail.invalid", "mail_usage", "mail", 60.0, timeout, SPEC, settings, state_dir=str(state_dir))


def run(settings: MaillogSettings, state_dir: Path | str) -> ProbeResult:
    return asyncio.run(run_job(job(settings, state_dir)))


def values(result: ProbeResult, name: str) -> dict[tuple[str, ...], float]:
    return {tuple(value for _, value in sample.labels): sample.value
            for sample in result.samples if sample.name == name}


@pytest.fixture
def today() -> date:
    return date.today()


def test_active_accounts_per_agency_and_window(tmp_path: Path, today: date) -> None:
    log = tmp_path / "mail.log"
    log.write_text(
        sent(today - timedelta(days=40), "ancient@sonoivu.invalid")      # outside every window
        + sent(today - timedelta(days=20), "an@sonoivu.invalid")          # 30d
        + read(today - timedelta(days=3), "binh@sonoivu.invalid")         # 7d, 30d
        + sent(today, "chi@sonoivu.invalid") + read(today, "Chi@Sonoivu.invalid", "pop3")  # 1d, sent and read
        + read(today - timedelta(days=6), "dung@stc.invalid")             # 7d
        + read(today, "giang")                                            # default domain -> CSV -> HQ
        + sent(today, "someone@elsewhere.invalid")                        # unknown agency
        + delivered(today, "binh@sonoivu.invalid") + delivered(today, "x@stc.invalid", "bounced"),
        encoding="utf-8")
    csv_file = tmp_path / "accounts.csv"
    csv_file.write_text("account,org_id\nan@sonoivu.invalid,000.00.20.H49\nbinh@sonoivu.invalid,000.00.20.H49\n"
                        "chi@sonoivu.invalid,000.00.20.H49\ngiang@quangnam.invalid,000.00.01.H49\n", encoding="utf-8")
    settings = MaillogSettings(files=[str(log)], domains=DOMAINS, accounts_csv=str(csv_file),
                               default_domain="quangnam.invalid")
    result = run(settings, tmp_path / "state")
    assert result.success, result.error
    assert values(result, "egov_mail_active_accounts") == {
        (A, "1d"): 1, (A, "7d"): 2, (A, "30d"): 3,
        (B, "1d"): 0, (B, "7d"): 1, (B, "30d"): 1,
        (HQ, "1d"): 1, (HQ, "7d"): 1, (HQ, "30d"): 1,
        ("unknown", "1d"): 1, ("unknown", "7d"): 1, ("unknown", "30d"): 1,
    }
    by_activity = values(result, "egov_mail_active_accounts_by_activity")
    assert (by_activity[(A, "1d", "sent")], by_activity[(A, "1d", "read")]) == (1, 1)
    assert (by_activity[(A, "30d", "sent")], by_activity[(A, "30d", "read")]) == (2, 2)
    assert values(result, "egov_mail_accounts") == {(A,): 3, (HQ,): 1}
    assert values(result, "egov_mail_deliveries_total") == {("sent",): 1, ("bounced",): 1, ("deferred",): 0}
    assert values(result, "postfix_smtpd_messages_processed_total") == {("PLAIN",): 4}
    assert values(result, "egov_mail_log_lines_total") == {("parsed",): 10, ("ignored",): 0, ("malformed",): 0}


def test_state_keeps_only_keyed_hashes(tmp_path: Path, today: date) -> None:
    log = tmp_path / "mail.log"
    log.write_text(sent(today, "secret.person@sonoivu.invalid") + read(today, "other.official@stc.invalid"),
                   encoding="utf-8")
    state = tmp_path / "state"
    result = run(MaillogSettings(files=[str(log)], domains=DOMAINS), state)
    assert result.success, result.error
    files = sorted(path for path in (state / "maillog").iterdir())
    assert [path.name for path in files if not path.name.endswith(".json")] == ["hmac.key"]
    assert stat.S_IMODE((state / "maillog").stat().st_mode) == 0o700
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        data = path.read_bytes().lower()
        for secret in (b"secret.person", b"other.official", b"sonoivu.invalid", b"stc.invalid"):
            assert secret not in data, (path.name, secret)
    text = " ".join(line.message for line in result.lines) + result.error
    assert "secret.person" not in text and "other.official" not in text
    assert all("secret" not in value for sample in result.samples for _, value in sample.labels)


def test_a_second_run_counts_only_new_lines_and_keeps_distinct_accounts(tmp_path: Path, today: date) -> None:
    log = tmp_path / "mail.log"
    log.write_text(sent(today, "an@sonoivu.invalid") + delivered(today, "b@stc.invalid"), encoding="utf-8")
    settings = MaillogSettings(files=[str(log)], domains=DOMAINS)
    first = run(settings, tmp_path / "state")
    with log.open("a", encoding="utf-8") as out:
        out.write(sent(today, "an@sonoivu.invalid") + delivered(today, "b@stc.invalid"))
    second = run(settings, tmp_path / "state")
    assert values(first, "egov_mail_deliveries_total")[("sent",)] == 1
    assert values(second, "egov_mail_deliveries_total")[("sent",)] == 2
    assert values(second, "egov_mail_active_accounts")[(A, "1d")] == 1  # the same account twice: still one


def test_unreadable_file_fails_the_run_but_reports_the_rest(tmp_path: Path, today: date) -> None:
    good = tmp_path / "mail.log"
    good.write_text(read(today, "an@sonoivu.invalid"), encoding="utf-8")
    missing = tmp_path / "zimbra-audit.log"
    result = run(MaillogSettings(files=[str(missing), str(good)], domains=DOMAINS), tmp_path / "state")
    assert not result.success
    assert result.outcome is Outcome.CONNECTION_FAILED
    assert result.error == f"cannot read {missing}: No such file or directory"
    assert values(result, "egov_mail_active_accounts")[(A, "1d")] == 1


def test_corrupt_state_is_moved_aside(tmp_path: Path, today: date) -> None:
    log = tmp_path / "mail.log"
    log.write_text(read(today, "an@sonoivu.invalid"), encoding="utf-8")
    settings = MaillogSettings(files=[str(log)], domains=DOMAINS)
    state = tmp_path / "state"
    run(settings, state)
    (state_file,) = (state / "maillog").glob("*.json")
    state_file.write_bytes(b'{"version": 1, "accounts": {"x": [1]}, garbage')
    result = run(settings, state)
    assert result.success, result.error
    assert list((state / "maillog").glob("*.json.corrupt-*"))
    assert any("starting afresh" in line.message for line in result.lines)
    assert result.partial_errors == {"state": 1}


def test_bad_accounts_csv_rows_are_reported_with_their_line(tmp_path: Path, today: date) -> None:
    log = tmp_path / "mail.log"
    log.write_text(read(today, "an@sonoivu.invalid"), encoding="utf-8")
    csv_file = tmp_path / "accounts.csv"
    csv_file.write_bytes(b"org_id,account\n000.00.20.H49,an@sonoivu.invalid\nnot an id!,b@sonoivu.invalid\n"
                         b"000.00.20.H49\n")
    result = run(MaillogSettings(files=[str(log)], accounts_csv=str(csv_file)), tmp_path / "state")
    assert result.success
    messages = [line.message for line in result.lines if line.level == "warn"]
    assert messages == [f"{csv_file}:3: org_id 'not an id!' is not an agency code", f"{csv_file}:4: too few columns"]
    assert values(result, "egov_mail_accounts") == {(A,): 1}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("files: [/var/log/mail.log]", "give domains, accounts_csv or both"),
        ("files: [mail.log]\n      domains: {a.vn: 000.00.20.H49}", "'mail.log' is not an absolute file path"),
        ("files: [/var/log/mail.log]\n      domains: {'a b': 000.00.20.H49}", "'a b' is not a mail domain"),
        ("files: [/var/log/mail.log]\n      domains: {a.vn: 'x y'}", "'x y' is not an agency code"),
        ("files: []\n      domains: {a.vn: 000.00.20.H49}", "give files, journal or both"),
        ("files: [/a, /a]\n      domains: {a.vn: 000.00.20.H49}", "files must be unique"),
    ],
)
def test_bad_settings_fail_at_load_with_their_path(body: str, message: str) -> None:
    text = ("office: {org_id: 000.00.00.H49, name: t, level: province}\n"
            f"modules:\n  mail_usage:\n    kind: maillog\n    maillog:\n      {body}\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(text.encode(), "agent.yaml")
    assert "modules.mail_usage.maillog" in caught.value.render()
    assert message in caught.value.render()


# --- restarts and big logs, through `egov-agent probe` in fresh processes ---------------------------------------


def probe_process(tmp_path: Path, log: Path, max_lines: int) -> tuple[str, int]:
    """Run `python -m agent probe` once (a restart each time); returns stdout and the child's peak RSS in KiB."""
    config = tmp_path / "agent.yaml"
    config.write_text(
        "office: {org_id: 000.00.00.H49, name: t, level: province}\n"
        f"agent: {{state_dir: {tmp_path / 'state'}}}\n"
        "modules:\n  mail_usage:\n    kind: maillog\n    timeout: 60s\n"
        f"    maillog: {{files: [{log}], domains: {{sonoivu.invalid: {A}}}, max_lines_per_run: {max_lines}}}\n",
        encoding="utf-8")
    # The child reports its own VmHWM as it exits: ru_maxrss of a child (RUSAGE_CHILDREN, wait4) also counts the
    # pytest process's memory it was forked from, which grows over a whole test run.
    argv = ["probe", "--config", str(config), "--module", "mail_usage", "mail.invalid"]
    code = ("import atexit, re, sys; from pathlib import Path; atexit.register(lambda: print('peak-kib', "
            "re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1), file=sys.stderr)); "
            f"from agent.cli import main; sys.exit(main({argv!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    peak = re.search(r"peak-kib (\d+)", done.stderr)
    assert peak is not None, done.stderr
    return done.stdout, int(peak.group(1))


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in:\n{text}")


@pytest.mark.slow
def test_restarts_mid_log_neither_double_count_nor_lose(tmp_path: Path, today: date) -> None:
    log = tmp_path / "mail.log"
    log.write_text("".join(sent(today, f"user{i % 50}@sonoivu.invalid") + delivered(today, "x@stc.invalid")
                           for i in range(1500)), encoding="utf-8")  # 3000 lines, read 1000 per run
    totals = []
    for _ in range(3):
        out, _ = probe_process(tmp_path, log, max_lines=1000)
        totals.append(metric(out, "egov_mail_log_lines_total", result="parsed"))
    with log.open("a", encoding="utf-8") as extra:
        extra.write(delivered(today, "late@stc.invalid"))
    out, _ = probe_process(tmp_path, log, max_lines=1000)
    assert totals == [1000, 2000, 3000]
    assert metric(out, "egov_mail_deliveries_total", status="sent") == 1501
    assert metric(out, "egov_mail_active_accounts", agency=A, window="1d") == 50


@pytest.mark.slow
def test_a_1gb_log_is_read_in_bounded_chunks_with_flat_memory(tmp_path: Path, today: date) -> None:
    log = tmp_path / "mail.log"
    block = "".join(sent(today, f"user{i}@sonoivu.invalid") + delivered(today, "x@stc.invalid")
                    for i in range(500)).encode()
    with log.open("wb") as out:
        for _ in range(100):  # 100k dense lines (~17 MB) first
            out.write(block)
        out.seek(1 << 30, os.SEEK_CUR)  # then a 1 GiB hole (reads as NUL bytes: one huge malformed line)
        out.write(b"\n" + block)
    assert log.stat().st_size > 1 << 30
    out1, rss1 = probe_process(tmp_path, log, max_lines=60_000)  # stops inside the dense part
    assert metric(out1, "egov_mail_log_lines_total", result="parsed") == 60_000
    assert metric(out1, "egov_mail_log_unread_bytes", file=str(log)) > 1 << 30
    out2, rss2 = probe_process(tmp_path, log, max_lines=10_000_000)
    assert metric(out2, "egov_mail_log_lines_total", result="parsed") == 101_000
    assert metric(out2, "egov_mail_log_lines_total", result="malformed") == 1
    assert metric(out2, "egov_mail_log_unread_bytes", file=str(log)) == 0
    assert metric(out2, "egov_mail_active_accounts", agency=A, window="1d") == 500
    # A whole agent process (Python, pydantic, aiohttp imported) stays far below the 1 GiB it read.
    assert max(rss1, rss2) < 150 * 1024, (rss1, rss2)


def big_log(path: Path, day: date, messages: int) -> int:
    """`messages` submissions + deliveries (two lines each); returns the line count."""
    block = "".join(sent(day, f"user{i % 100}@sonoivu.invalid") + delivered(day, "x@stc.invalid")
                    for i in range(1000))
    with path.open("w", encoding="utf-8") as out:
        for _ in range(messages // 1000):
            out.write(block)
    return 2 * (messages // 1000) * 1000


@pytest.mark.slow
def test_a_run_stopped_by_its_deadline_saves_its_place(tmp_path: Path, today: date) -> None:
    log = tmp_path / "mail.log"
    total = big_log(log, today, 400_000)
    settings = MaillogSettings(files=[str(log)], domains=DOMAINS, max_lines_per_run=100_000_000)
    short = asyncio.run(run_job(job(settings, tmp_path / "state", timeout=1.0)))
    assert short.success, short.error
    parsed = values(short, "egov_mail_log_lines_total")[("parsed",)]
    assert 0 < parsed < total
    assert values(short, "egov_mail_log_unread_bytes")[(str(log),)] > 0
    rest = asyncio.run(run_job(job(settings, tmp_path / "state", timeout=60)))
    assert values(rest, "egov_mail_log_lines_total")[("parsed",)] == total
    assert values(rest, "egov_mail_deliveries_total")[("sent",)] == total // 2


@pytest.mark.slow
def test_a_second_run_while_the_first_still_reads_is_refused(tmp_path: Path, today: date) -> None:
    log = tmp_path / "mail.log"
    big_log(log, today, 300_000)
    settings = MaillogSettings(files=[str(log)], domains=DOMAINS)

    async def both() -> list[ProbeResult]:
        return list(await asyncio.gather(run_job(job(settings, tmp_path / "state")),
                                         run_job(job(settings, tmp_path / "state"))))

    results = sorted(asyncio.run(both()), key=lambda result: result.success)
    assert [result.success for result in results] == [False, True]
    assert results[0].outcome is Outcome.TIMEOUT
    assert results[0].error == "an earlier run of this check and target is still reading the logs"


def test_accounts_idle_for_more_than_31_days_are_forgotten(tmp_path: Path, today: date) -> None:
    log = tmp_path / "mail.log"
    log.write_text(sent(today - timedelta(days=32), "old@sonoivu.invalid") + sent(today, "new@sonoivu.invalid"),
                   encoding="utf-8")
    state = tmp_path / "state"
    run(MaillogSettings(files=[str(log)], domains=DOMAINS), state)
    (state_file,) = (state / "maillog").glob("*.json")
    assert len(json.loads(state_file.read_bytes())["accounts"]) == 1
