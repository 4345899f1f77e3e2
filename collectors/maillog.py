"""Official email usage from the mail host's logs: distinct active accounts per agency, mail traffic counters."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from agent.errors import Outcome, ProbeError
from collectors import _maillog_parse as parse
from collectors._maillog_agency import ORG_ID, AccountList, AgencyMap, read_accounts_csv
from collectors._maillog_files import Budget, read_log
from collectors._maillog_journal import read_journal
from collectors._maillog_state import (
    WINDOWS,
    MaillogState,
    account_hash,
    key_id,
    load_or_create_key,
    load_state,
    save_state,
)
from collectors.base import CollectorSpec, MetricSpec, ProbeContext, Settings

_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
_ACCOUNT_CACHE_MAX = 100_000
_READ_SHARE = 0.8
"""Share of the run's time left spent reading; the rest is for saving the state and reporting."""


def _absolute(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise ValueError(f"{value!r} is not an absolute file path")
    return value


def _domain(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not _DOMAIN.match(value):
        raise ValueError(f"{value!r} is not a mail domain")
    return value


def _org_id(value: str) -> str:
    if not ORG_ID.match(value):
        raise ValueError(f"{value!r} is not an agency code (letters, digits, '.', '_', '-')")
    return value


FilePath = Annotated[str, Field(max_length=4096), AfterValidator(_absolute)]
Domain = Annotated[str, AfterValidator(_domain)]
OrgId = Annotated[str, AfterValidator(_org_id)]


class JournalSettings(Settings):
    """Which systemd journal entries to read (journalctl)."""

    units: Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z0-9@:._\\-]{1,256}$")]], Field(max_length=16)] = (
        Field(default_factory=lambda: ["postfix@-.service", "postfix.service", "dovecot.service"]))
    """journalctl --unit for each; an empty list reads every entry."""
    directory: FilePath | None = None
    """journalctl --directory: a journal kept elsewhere (default: the system journal)."""


class MaillogSettings(Settings):
    """Which logs to read and how accounts map to agencies (org_id)."""

    files: Annotated[list[FilePath], Field(max_length=32)] = Field(default_factory=list)
    """Postfix / Dovecot logs (syslog or their own files) and Zimbra's audit.log; rotated siblings are found."""
    journal: JournalSettings | None = None
    """Also (or instead) read the systemd journal."""
    domains: dict[Domain, OrgId] = Field(default_factory=dict)
    """Mail domain -> org_id; a subdomain belongs to its parent's agency unless listed itself."""
    accounts_csv: FilePath | None = None
    """CSV with a header naming `account` and `org_id`: wins over `domains`, and gives egov_mail_accounts."""
    default_domain: Domain | None = None
    """Domain added to user names logged without one (Dovecot, SASL with bare user names)."""
    max_lines_per_run: Annotated[int, Field(ge=1000, le=100_000_000)] = 1_000_000
    start_at: Literal["beginning", "end"] = "beginning"
    """Where a log file seen for the first time is read from."""

    @model_validator(mode="after")
    def _mapping_and_unique(self) -> MaillogSettings:
        if not self.files and self.journal is None:
            raise ValueError("give files, journal or both: there is nothing to read")
        if not self.domains and self.accounts_csv is None:
            raise ValueError("give domains, accounts_csv or both: accounts must map to agencies")
        if len(set(self.files)) != len(self.files):
            raise ValueError("files must be unique")
        return self


_AGENCY = ("agency",)
METRICS = (
    MetricSpec("egov_mail_active_accounts", "gauge",
               "Distinct accounts of the agency that sent or read mail in the last window (1d, 7d, 30d).",
               ("agency", "window")),
    MetricSpec("egov_mail_active_accounts_by_activity", "gauge",
               "Distinct accounts of the agency that sent (SASL submission) or read (IMAP, POP3, web login) mail "
               "in the last window.", ("agency", "window", "activity")),
    MetricSpec("egov_mail_accounts", "gauge", "Accounts of the agency in the accounts CSV.", _AGENCY),
    MetricSpec(parse.RECEIVED, "counter", "Total number of messages processed.", ("sasl_method",)),
    MetricSpec(parse.REJECTED, "counter", "Total number of NOQUEUE rejects.", ("code",)),
    MetricSpec(parse.SASL_FAILED, "counter", "Total number of SASL authentication failures."),
    MetricSpec(parse.DELIVERIES, "counter",
               "Deliveries per recipient by status (sent, bounced, deferred); sent is pflogsumm's delivered.",
               ("status",)),
    MetricSpec("egov_mail_log_lines_total", "counter", "Log lines read, by result (parsed, ignored, malformed).",
               ("result",)),
    MetricSpec("egov_mail_log_unread_bytes", "gauge",
               "Bytes of the log file not read yet (after a run capped by max_lines_per_run or time).", ("file",)),
)


async def probe_maillog(ctx: ProbeContext, settings: MaillogSettings) -> bool:
    """Read what the logs gained since the last run (bounded), update the state, report usage and counters."""
    deadline = time.monotonic() + ctx.remaining() * _READ_SHARE
    try:
        run = await asyncio.to_thread(_run, ctx.check, ctx.target, settings, ctx.state_dir, deadline)
    except _Busy:
        return ctx.fail(Outcome.TIMEOUT, "an earlier run of this check and target is still reading the logs")
    except (OSError, ValueError) as err:
        return ctx.fail(Outcome.ERROR, "maillog state: %s", err)
    for level, message, subsystem in run.notes:
        ctx.log("%s", message, level=level)
        if subsystem:
            ctx.count_partial_error(subsystem)
    _report(ctx, run)
    if run.unreadable:
        return ctx.fail(Outcome.CONNECTION_FAILED, "cannot read %s", "; ".join(run.unreadable))
    return True


SPEC = CollectorSpec(
    kind="maillog",
    settings=MaillogSettings,
    probe=probe_maillog,
    metrics=METRICS,
)


@dataclass
class _RunResult:
    active: dict[tuple[str, str, str], int] = field(default_factory=dict)
    agencies: set[str] = field(default_factory=set)
    accounts: dict[str, int] | None = None
    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    unread: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    notes: list[tuple[str, str, str]] = field(default_factory=list)
    """(level, message, partial-error subsystem or "")."""


class _Busy(ProbeError):
    """An earlier run on the same state still holds it."""

    outcome = Outcome.TIMEOUT


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_cache: dict[str, tuple[tuple[int, int, int], MaillogState]] = {}
_csv_cache: dict[str, tuple[tuple[int, int, int], AccountList]] = {}
_ephemeral_key = secrets.token_bytes(32)


def _run(check: str, target: str, settings: MaillogSettings, state_dir: str, deadline: float) -> _RunResult:
    name = hashlib.sha256(f"{check}\0{target}".encode()).hexdigest()[:16]
    directory = Path(state_dir) / "maillog" if state_dir else None
    state_path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', check)[:64]}-{name}.json" if directory else None
    with _locks_guard:
        lock = _locks.setdefault(str(state_path or name), threading.Lock())
    if not lock.acquire(blocking=False):
        raise _Busy
    try:
        key = load_or_create_key(directory) if directory else _ephemeral_key
        result = _RunResult()
        state = _load(state_path, key, result)
        try:
            _read_and_count(settings, key, state, deadline, result)
            if state_path is not None:
                save_state(state_path, state)
                _cache[str(state_path)] = (_signature(state_path), state)
        except BaseException:
            if state_path is not None:
                _cache.pop(str(state_path), None)  # the next run starts again from what is on disk
            raise
        return result
    finally:
        lock.release()


def _load(state_path: Path | None, key: bytes, result: _RunResult) -> MaillogState:
    fresh = MaillogState(key_id=key_id(key))
    if state_path is None:
        return fresh
    cached = _cache.get(str(state_path))
    if cached is not None and cached[0] == _signature(state_path):
        state = cached[1]
    else:
        try:
            state = load_state(state_path) or fresh
        except ValueError as err:
            aside = state_path.with_name(f"{state_path.name}.corrupt-{int(time.time())}")
            state_path.replace(aside)
            result.notes.append(("warn", f"{err}; moved to {aside.name}, starting afresh", "state"))
            state = fresh
    if state.key_id != fresh.key_id:
        result.notes.append(("warn", "the HMAC key changed: the active-account hashes kept so far are dropped",
                             "state"))
        state.accounts.clear()
        state.key_id = fresh.key_id
    return state


def _read_and_count(settings: MaillogSettings, key: bytes, state: MaillogState, deadline: float,
                    result: _RunResult) -> None:
    accounts = _accounts(settings, result)
    agency_map = AgencyMap(settings.domains, accounts.accounts if accounts else {}, settings.default_domain)
    parser = parse.LogParser(_recorder(key, agency_map, state))
    budget = Budget(settings.max_lines_per_run, deadline)
    for file in settings.files:
        try:
            position, report = read_log(Path(file), state.positions.get(file), parser.feed, budget,
                                        start_at_end=settings.start_at == "end")
        except OSError as err:
            result.unreadable.append(f"{file}: {err.strerror or err}")
            continue
        state.positions[file] = position
        parser.count_malformed(report.too_long)
        result.unread[file] = report.unread_bytes
        if report.rotated:
            result.notes.append(("debug", f"{file}: read the rest of the rotated {report.rotated}", ""))
        if report.lost:
            result.notes.append(("warn", report.lost, "rotation"))
        if report.unread_bytes:
            result.notes.append(("info", f"{file}: {report.unread_bytes} bytes left for the next runs", ""))
    if settings.journal is not None:
        _read_journal(settings, state, parser, budget, result)
    state.add_counts(parser.counters, parser.lines)
    today = date.today().toordinal()
    state.prune(today)
    result.active = state.active(today)
    result.agencies = {entry[0] for entry in state.accounts.values()} | set(settings.domains.values())
    if accounts is not None:
        result.accounts = accounts.per_agency()
        result.agencies |= set(result.accounts)
    result.counters = dict(state.counters)
    result.lines = dict(state.lines)


def _read_journal(settings: MaillogSettings, state: MaillogState, parser: parse.LogParser, budget: Budget,
                  result: _RunResult) -> None:
    journal = settings.journal
    assert journal is not None
    cursor, report = read_journal(journal.directory, journal.units, state.cursors.get("journal"), parser.feed,
                                  budget, start_at_end=settings.start_at == "end")
    if cursor is not None:
        state.cursors["journal"] = cursor
    parser.count_malformed(report.too_long)
    if report.error:
        result.unreadable.append(f"the journal: {report.error}")


def _recorder(key: bytes, agency_map: AgencyMap, state: MaillogState) -> Callable[[bytes, int, int], None]:
    seen: dict[bytes, tuple[str, str]] = {}

    def record(account: bytes, activity: int, day: int) -> None:
        known = seen.get(account)
        if known is None:
            qualified = agency_map.qualify(account)
            known = (account_hash(key, qualified), agency_map.agency(qualified))
            if len(seen) >= _ACCOUNT_CACHE_MAX:
                seen.clear()
            seen[account] = known
        state.record(known[0], known[1], activity, day)

    return record


def _accounts(settings: MaillogSettings, result: _RunResult) -> AccountList | None:
    if settings.accounts_csv is None:
        return None
    path = Path(settings.accounts_csv)
    try:
        signature = _signature(path)
        cached = _csv_cache.get(settings.accounts_csv)
        if cached is not None and cached[0] == signature:
            accounts = cached[1]
        else:
            accounts = read_accounts_csv(path, settings.default_domain)
            _csv_cache[settings.accounts_csv] = (signature, accounts)
    except OSError as err:
        result.notes.append(("warn", f"{path}: {err.strerror or err}; accounts per agency unknown", "accounts_csv"))
        return None
    for problem in accounts.problems[:20]:
        result.notes.append(("warn", problem, "accounts_csv"))
    return accounts


def _signature(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return (0, 0, 0)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _report(ctx: ProbeContext, run: _RunResult) -> None:
    add = ctx.sink.add
    for agency in sorted(run.agencies):
        for window, _ in WINDOWS:
            add("egov_mail_active_accounts", run.active.get((agency, window, "any"), 0), agency, window)
            for activity in ("sent", "read"):
                add("egov_mail_active_accounts_by_activity", run.active.get((agency, window, activity), 0),
                    agency, window, activity)
    if run.accounts is not None:
        for agency, count in sorted(run.accounts.items()):
            add("egov_mail_accounts", count, agency)
    counters = run.counters
    for status in parse.DELIVERY_STATUSES:
        add(parse.DELIVERIES, counters.get((parse.DELIVERIES, status), 0), status)
    add(parse.SASL_FAILED, counters.get((parse.SASL_FAILED, ""), 0))
    for (metric, label), value in sorted(counters.items()):
        if metric in (parse.RECEIVED, parse.REJECTED):
            add(metric, value, label)
    for result in parse.RESULTS:
        add("egov_mail_log_lines_total", run.lines.get(result, 0), result)
    for file, unread in sorted(run.unread.items()):
        add("egov_mail_log_unread_bytes", unread, file)
