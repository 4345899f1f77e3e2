"""The maillog line parser on real-format Postfix, Dovecot and Zimbra lines, and on broken ones."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors._maillog_parse import (
    DELIVERIES,
    READ,
    RECEIVED,
    REJECTED,
    SASL_FAILED,
    SENT,
    LogParser,
)

TESTDATA = Path(__file__).resolve().parent.parent / "testdata/maillog"
TODAY = date(2026, 11, 27)


def parse(lines: list[bytes], today: date = TODAY) -> tuple[LogParser, list[tuple[bytes, int, date]]]:
    events: list[tuple[bytes, int, date]] = []
    parser = LogParser(lambda account, activity, day: events.append((account, activity, date.fromordinal(day))),
                       today=today)
    parser.feed(lines)
    return parser, events


def test_postfix_sample_log_counts_like_postfix_exporter() -> None:
    parser, events = parse((TESTDATA / "postfix.log").read_bytes().splitlines())
    assert events == [(b"alice@sonoivu.quangnam.gov.vn", SENT, TODAY)]
    assert parser.counters == {
        (RECEIVED, "PLAIN"): 1,
        (RECEIVED, ""): 1,
        (DELIVERIES, "sent"): 1,
        (DELIVERIES, "deferred"): 1,
        (DELIVERIES, "bounced"): 1,
        (REJECTED, "550"): 1,
        (SASL_FAILED, ""): 1,
    }
    assert parser.lines == {"parsed": 7, "ignored": 10, "malformed": 0}


def test_dovecot_logins_are_reads_failed_ones_are_not() -> None:
    parser, events = parse((TESTDATA / "dovecot.log").read_bytes().splitlines())
    assert events == [(b"bob@stc.quangnam.gov.vn", READ, TODAY), (b"dave", READ, TODAY)]
    assert parser.lines == {"parsed": 2, "ignored": 5, "malformed": 0}


def test_zimbra_audit_counts_successful_mailbox_logins_only() -> None:
    parser, events = parse((TESTDATA / "audit.log").read_bytes().splitlines())
    # grace failed (error=), heidi is an SMTP password check (oproto=smtp), the admin and LMTP lines are no reads.
    assert events == [(b"erin@sonoivu.quangnam.gov.vn", READ, TODAY), (b"frank@stc.quangnam.gov.vn", READ, TODAY),
                      (b"ivan@sonoivu.quangnam.gov.vn", READ, TODAY)]
    assert parser.lines == {"parsed": 3, "ignored": 4, "malformed": 0}


@pytest.mark.parametrize(
    ("line", "account", "activity"),
    [
        pytest.param(b"Nov 27 13:03:42 mail dovecot: imap-login: Login: user=<u1@a.vn>, method=PLAIN, rip=10.0.0.1, "
                     b"lip=10.0.0.2, mpid=1, TLS, session=<x>", b"u1@a.vn", READ, id="dovecot via syslog"),
        pytest.param(b"Nov 27 13:03:42 mail dovecot[812]: pop3-login: Login: user=<u2@a.vn>, method=PLAIN",
                     b"u2@a.vn", READ, id="dovecot 2.2 syslog with pid"),
        pytest.param(b"2026-11-27T13:03:42.123456+07:00 mail postfix/submission/smtpd[30662]: 1294721: "
                     b"client=unknown[127.0.0.1], sasl_method=LOGIN, sasl_username=U3@A.VN", b"u3@a.vn", SENT,
                     id="rsyslog RFC 3339 timestamp"),
        pytest.param(b"Nov  7 01:02:03 mail postfix/smtps/smtpd[1]: ABC: client=h[10.1.1.1], sasl_method=PLAIN, "
                     b"sasl_username=u4@a.vn", b"u4@a.vn", SENT, id="single-digit day"),
        pytest.param(b"2026-11-27 08:00:01,101 INFO  [ImapSSLServer-12] [ip=10.49.20.5;] security - cmd=Auth; "
                     b"account=u5@a.vn; protocol=zsync;", b"u5@a.vn", READ, id="zimbra activesync"),
    ],
)
def test_one_activity_line(line: bytes, account: bytes, activity: int) -> None:
    parser, events = parse([line])
    assert [(a, k) for a, k, _ in events] == [(account, activity)]
    assert parser.lines["parsed"] == 1


def test_dates_without_year_follow_pflogsumm_rollover() -> None:
    _, events = parse([b"Dec 31 23:59:59 mail dovecot: imap-login: Login: user=<old@a.vn>",
                       b"Jan  1 00:00:01 mail dovecot: imap-login: Login: user=<new@a.vn>"], today=date(2027, 1, 1))
    assert [day for _, _, day in events] == [date(2026, 12, 31), date(2027, 1, 1)]


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"Nov 27 13:03", id="truncated timestamp"),
        pytest.param(b"Foo 27 13:03:42 mail postfix/smtpd[1]: connect from x", id="no such month"),
        pytest.param(b"Feb 30 13:03:42 mail dovecot: imap-login: Login: user=<a@b.vn>", id="no such day"),
        pytest.param(b"\x00\x00\x00\x00garbage \xff\xfe", id="binary garbage"),
        pytest.param(b"Nov 27 13:03:42 mail postfix/submission/smtpd[1]: ABC: client=unknown[127.0.0.1], sasl_method="
                     b"PLAIN, sasl_username=\xff\xfe@a.vn", id="account not UTF-8"),
        pytest.param(b"Nov 27 13:03:42 mail dovecot: imap-login: Login: user=<" + b"x" * 400 + b"@a.vn>",
                     id="account too long"),
    ],
)
def test_malformed_lines_are_counted_never_raised(line: bytes) -> None:
    parser, events = parse([line])
    assert events == []
    assert parser.lines == {"parsed": 0, "ignored": 0, "malformed": 1}


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"Nov 27 13:03:42 mail postfix/submission/smtpd[30662]: 1294721: client=unknown[127.0.",
                     id="cut after client="),
        pytest.param(b"Nov 27 13:03:42 mail postfix/virtual[1]: ABC: to=<bob@a.vn>, relay=virtual, delay=0.01, "
                     b"delays=0.01/0.01/0/0, dsn=2.0.0, sta", id="cut before status"),
        pytest.param(b"Nov 27 13:03:42 mail dovecot: imap-login: Login: user=<bob@a.v", id="cut inside user"),
        pytest.param(b"Nov 27 13:03:42 mail postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[1.2.3.4]: 5",
                     id="cut reject"),
        pytest.param(b"Nov 27 13:03:42 mail sshd[99]: Accepted password for root from 10.0.0.1 port 22",
                     id="another program"),
        pytest.param(b"Nov 27 13:03:42 mail postfix/smtp[1]: ABC: to=<a@b.vn>, relay=mx[1.2.3.4]:25, delay=1, "
                     b"delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 forwarded as 9F8E7D)", id="forwarded as"),
        pytest.param(b"Nov 27 13:03:42 mail postfix/lmtp[1]: ABC: to=<a@b.vn>, relay=x, delay=1, status=expired",
                     id="unknown status"),
        pytest.param(b"Nov 27 13:03:42 mail postfix/submission/smtpd[1]: ABC: client=x[1.2.3.4], sasl_method=PLAIN, "
                     b"sasl_username=", id="empty sasl_username is a received message only"),
    ],
)
def test_truncated_or_other_lines_count_no_activity(line: bytes) -> None:
    parser, events = parse([line])
    assert events == []
    assert sum(parser.lines.values()) == 1
    assert parser.counters.get((DELIVERIES, "sent"), 0) == 0


def test_postfix_user_named_like_a_daemon_is_still_a_dovecot_login() -> None:
    _, events = parse([b"Nov 27 13:03:42 mail dovecot: imap-login: Login: user=<postfix@a.vn>, method=PLAIN"])
    assert events == [(b"postfix@a.vn", READ, TODAY)]


def test_counts_per_day_like_pflogsumm() -> None:
    lines = [
        b"Nov 26 10:00:00 mail postfix/smtp[1]: A: to=<x@b.vn>, relay=mx[1.2.3.4]:25, delay=1, delays=0/0/0/1, "
        b"dsn=2.0.0, status=sent (250 ok)",
        b"Nov 27 10:00:00 mail postfix/local[2]: B: to=<y@b.vn>, orig_to=<z@b.vn>, relay=local, delay=1, "
        b"delays=0/0/0/1, dsn=2.0.0, status=sent (delivered to mailbox)",
        b"Nov 27 10:00:01 mail postfix/lmtp[3]: C: to=<w@b.vn>, relay=127.0.0.1[127.0.0.1]:7025, conn_use=2, "
        b"delay=1, delays=0/0/0/1, dsn=2.1.5, status=sent (250 2.1.5 Delivery OK)",
    ]
    events: list[object] = []
    parser = LogParser(lambda *args: events.append(args), today=TODAY, by_day=True)
    parser.feed(lines)
    assert parser.by_day == {(date(2026, 11, 26).toordinal(), DELIVERIES, "sent"): 1,
                             (date(2026, 11, 27).toordinal(), DELIVERIES, "sent"): 2}


SAMPLES = [line for name in ("postfix.log", "dovecot.log", "audit.log")
           for line in (TESTDATA / name).read_bytes().splitlines()]


@settings(max_examples=120, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=300),
                          st.tuples(st.sampled_from(SAMPLES), st.integers(0, 400), st.binary(max_size=8)).map(
                              lambda t: t[0][:t[1]] + t[2])), max_size=40))
def test_any_bytes_are_counted_once_and_never_raise(lines: list[bytes]) -> None:
    parser, events = parse(lines)
    assert sum(parser.lines.values()) == len(lines)
    assert len(events) <= parser.lines["parsed"]
