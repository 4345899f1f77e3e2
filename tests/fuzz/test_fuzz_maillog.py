"""Fuzzed mail logs: the parser counts every line as parsed, ignored or malformed and never raises."""

from __future__ import annotations

from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors._maillog_parse import LogParser

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
REAL = [
    b"Nov 27 13:03:42 mail postfix/submission/smtpd[30662]: 4MXyz1abcd: client=unknown[127.0.0.1], "
    b"sasl_method=PLAIN, sasl_username=alice@testbed.invalid",
    b"Nov 27 13:03:42 mail postfix/local[30670]: 4MXyz1abcd: to=<bob@testbed.invalid>, relay=local, delay=0.1, "
    b"delays=0/0/0/0.1, dsn=2.0.0, status=sent (delivered to mailbox)",
    b"2026-11-27T13:03:42.123+07:00 mail postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[1.2.3.4]: 554 5.7.1 no",
    b"Nov 27 13:03:42 imap-login: Info: Login: user=<alice@testbed.invalid>, method=PLAIN, rip=127.0.0.1",
    b"2026-11-27 13:03:42,505 INFO  [qtp-1] [] security - cmd=Auth; account=alice@x.vn; protocol=imap;",
    b"Nov 27 13:03:56 mail postfix/submission/smtpd[30662]: warning: unknown[127.0.0.1]: SASL PLAIN "
    b"authentication failed: authentication failure",
]


def mutate(line: bytes, data: st.DataObject) -> bytes:
    raw = bytearray(line)
    for _ in range(data.draw(st.integers(0, 6))):
        if not raw:
            break
        position = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate", "repeat"]))
        if action == "flip":
            raw[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "delete":
            del raw[position:position + data.draw(st.integers(1, 10))]
        elif action == "insert":
            raw[position:position] = data.draw(st.binary(max_size=8))
        elif action == "truncate":
            del raw[position:]
        else:
            raw[position:position] = raw[position:position + 20] * data.draw(st.integers(1, 50))
    return bytes(raw)


@FUZZ
@given(st.data())
def test_mutated_and_random_lines(data: st.DataObject) -> None:
    lines = [mutate(data.draw(st.sampled_from(REAL)), data) for _ in range(data.draw(st.integers(1, 8)))]
    lines += data.draw(st.lists(st.binary(max_size=200), max_size=4))
    seen: list[tuple[bytes, int, int]] = []
    parser = LogParser(lambda account, activity, day: seen.append((account, activity, day)),
                       today=date(2026, 11, 27), by_day=data.draw(st.booleans()))
    parser.feed(lines)
    assert sum(parser.lines.values()) == len(lines)
    assert all(len(account) <= 320 for account, _, _ in seen)
