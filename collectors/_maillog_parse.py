"""Mail log lines (Postfix, Dovecot, Zimbra audit.log) to counts and account activity; bytes in, no I/O.

Recognised lines:
- Postfix (syslog or maillog_file, BSD or RFC 3339 timestamps): smtpd `QUEUEID: client=..., sasl_method=M,
  sasl_username=U` (a message received; with sasl_username the account *sent* mail), delivery agents'
  `to=<...>, relay=..., delay=..., status=sent|bounced|deferred` (pflogsumm's "delivered" excludes
  `forwarded as`), `NOQUEUE: reject: RCPT from HOST: CODE` and `SASL ... authentication failed`.
- Dovecot (its own log_path or syslog): `imap-login: Login: user=<U>` and `pop3-login: Login: user=<U>` (the account
  *read* mail).
- Zimbra mailbox audit.log: `security - cmd=Auth; account=U; protocol=P;` without `error=` (a read for imap, pop3,
  soap (web client) and zsync (ActiveSync); an SMTP password check (`oproto=smtp`) is not a read).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from datetime import date

SENT = 0
READ = 1
RESULTS = ("parsed", "ignored", "malformed")

RECEIVED = "postfix_smtpd_messages_processed_total"
REJECTED = "postfix_smtpd_messages_rejected_total"
SASL_FAILED = "postfix_smtpd_sasl_authentication_failures_total"
DELIVERIES = "egov_mail_deliveries_total"
DELIVERY_STATUSES = ("sent", "bounced", "deferred")

_MONTHS = {name: index for index, name in enumerate(
    (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"), start=1)}
# BSD syslog "Nov 27 13:03:42 " or RFC 3339 / Zimbra "2026-11-27T13:03:42.123+07:00 " / "2026-11-27 13:03:42,505 ".
_HEAD = re.compile(
    rb"(?:([A-Z][a-z]{2}) ([ \d]\d) |(\d{4})-(\d\d)-(\d\d)[T ])\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)? ")
_POSTFIX = re.compile(rb"[\w.-]+ postfix(?:/[\w.-]+)*\[\d+\]: ")
_CLIENT = re.compile(rb"\w+: client=[^,]*(?:, sasl_method=([^,\s]*))?(?:, sasl_username=([^,\s]*))?")
_DELIVERY = re.compile(rb"\w+: to=<[^>]*>, (?:orig_to=<[^>]*>, )?relay=[^,]+, (?:conn_use=[^,]+, )?delay=[^,]+, "
                       rb"(?:delays=[^,]+, )?(?:dsn=[^,]+, )?status=(\w+)(.*)")
_REJECT = re.compile(rb"NOQUEUE: reject: RCPT from \S+: (\d+) ")
_DOVECOT_LOGIN = re.compile(rb"(?:imap|pop3)-login: (?:Info: )?Login: user=<([^>]*)>")
_ZIMBRA_AUTH = re.compile(rb"\] security - cmd=Auth; account=([^;\s]+); protocol=(\w+);")
_ZIMBRA_READ = frozenset((b"imap", b"pop3", b"soap", b"zsync"))
_MAX_ACCOUNT = 320


class LogParser:
    """Feeds lines into counters and per-account activity days; keeps nothing but what its callbacks store.

    `on_activity(account, activity, day)` gets the account as raw bytes (lower-cased, not yet hashed), SENT or
    READ, and the proleptic ordinal of the log line's date.
    """

    def __init__(self, on_activity: Callable[[bytes, int, int], None], today: date | None = None,
                 by_day: bool = False) -> None:
        self.on_activity = on_activity
        self.counters: dict[tuple[str, str], int] = {}
        """(metric, label value) -> count; the label is sasl_method, code or status ("" for none)."""
        self.by_day: dict[tuple[int, str, str], int] | None = {} if by_day else None
        """With by_day: (day ordinal, metric, label) -> count, as pflogsumm's per-day table."""
        self.lines = dict.fromkeys(RESULTS, 0)
        today = today or date.fromtimestamp(time.time())
        self._this_year, self._this_month = today.year, today.month
        self._days: dict[bytes, int] = {}

    def feed(self, lines: Iterable[bytes]) -> None:
        """Count each line as parsed, ignored or malformed; never raises for a line's content."""
        head = _HEAD.match
        days = self._days
        parsed = ignored = malformed = 0
        for line in lines:
            m = head(line)
            if m is None:
                malformed += 1
                continue
            key = line[:m.end(2) if m.lastindex == 2 else 10]
            day = days.get(key)
            if day is None:
                day = self._day(m)
                if day is None:
                    malformed += 1
                    continue
            rest = line[m.end():]
            if b"postfix" in rest and (pm := _POSTFIX.match(rest)) is not None:
                result = self._postfix(rest[pm.end():], day)
            elif b"-login: " in rest:
                result = self._dovecot(rest, day)
            elif b" security - cmd=Auth; " in rest:
                result = self._zimbra(rest, day)
            else:
                result = 1
            if result == 0:
                parsed += 1
            elif result == 1:
                ignored += 1
            else:
                malformed += 1
        self.lines["parsed"] += parsed
        self.lines["ignored"] += ignored
        self.lines["malformed"] += malformed

    def count_malformed(self, count: int = 1) -> None:
        """Count lines the reader dropped before parsing (too long)."""
        self.lines["malformed"] += count

    def _day(self, m: re.Match[bytes]) -> int | None:
        try:
            if m.group(1) is not None:
                month = _MONTHS.get(m.group(1))
                if month is None:
                    return None
                # As pflogsumm: a month after the current one is last year's.
                year = self._this_year - 1 if month > self._this_month else self._this_year
                day = date(year, month, int(m.group(2))).toordinal()
                key = m.string[:m.end(2)]
            else:
                day = date(int(m.group(3)), int(m.group(4)), int(m.group(5))).toordinal()
                key = m.string[:10]
        except ValueError:
            return None
        if len(self._days) > 4096:
            self._days.clear()
        self._days[key] = day
        return day

    def _count(self, metric: str, label: str, day: int) -> None:
        key = (metric, label)
        self.counters[key] = self.counters.get(key, 0) + 1
        if self.by_day is not None:
            day_key = (day, metric, label)
            self.by_day[day_key] = self.by_day.get(day_key, 0) + 1

    def _postfix(self, message: bytes, day: int) -> int:
        if b"status=" in message:
            d = _DELIVERY.match(message)
            if d is None:
                return 1
            status = d.group(1)
            if status == b"sent" and b"forwarded as " in d.group(2):
                return 1
            if status not in (b"sent", b"bounced", b"deferred"):
                return 1
            self._count(DELIVERIES, status.decode("ascii"), day)
            return 0
        if b": client=" in message:
            c = _CLIENT.match(message)
            if c is None:
                return 2
            method, user = c.group(1), c.group(2)
            self._count(RECEIVED, _label(method), day)
            if user:
                return self._activity(user, SENT, day)
            return 0
        if message.startswith(b"NOQUEUE: reject: "):
            r = _REJECT.match(message)
            if r is None:
                return 1
            self._count(REJECTED, r.group(1).decode("ascii"), day)
            return 0
        if message.startswith(b"warning: ") and b"SASL " in message and b" authentication failed" in message:
            self._count(SASL_FAILED, "", day)
            return 0
        return 1

    def _dovecot(self, rest: bytes, day: int) -> int:
        m = _DOVECOT_LOGIN.search(rest)
        if m is None:
            return 1
        return self._activity(m.group(1), READ, day)

    def _zimbra(self, rest: bytes, day: int) -> int:
        m = _ZIMBRA_AUTH.search(rest)
        if m is None:
            return 1
        tail = rest[m.end():]
        if b"error=" in tail or b"oproto=smtp" in rest[:m.start()] or m.group(2) not in _ZIMBRA_READ:
            return 1
        return self._activity(m.group(1), READ, day)

    def _activity(self, account: bytes, activity: int, day: int) -> int:
        account = account.strip().lower()
        if not account or len(account) > _MAX_ACCOUNT or b"\xef\xbf\xbd" in account:
            return 2
        try:
            account.decode("utf-8")
        except UnicodeDecodeError:
            return 2
        self.on_activity(account, activity, day)
        return 0


def _label(value: bytes | None) -> str:
    if not value:
        return ""
    return value.decode("ascii", "replace")[:32]
