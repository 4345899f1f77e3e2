"""Hostile or broken receivers (issue 7, Bad input): huge and slow bodies, random status codes, bad Retry-After.

The sender must never hang on a body, never hold more than ERROR_BODY_BYTES of one, follow the retry rules of
RELIABILITY.md §6.1 for whatever status comes, keep every sample unless the status says the batch is refused for
good, and never crash.
"""

from __future__ import annotations

import random
import time
import tracemalloc
from collections import Counter

import pytest
from fakes.rw_harness import until
from fakes.rw_receiver import FakeReceiver, Received, Reply

from exporters.remote_write import remote_pb2
from exporters.remote_write.queue import parse
from exporters.remote_write.sender import ERROR_BODY_BYTES

HUGE = 50 * 2**20
NOTABLE = (200, 204, 301, 400, 401, 403, 404, 409, 413, 429, 500, 502, 503, 504)
Series = tuple[tuple[tuple[str, str], ...], float, int]


async def test_2xx_with_a_huge_body_is_not_read(make) -> None:
    receiver = await FakeReceiver([Reply(200, stream=HUGE)]).start()
    try:
        h = await make(receiver)
        tracemalloc.start()
        try:
            started = time.monotonic()
            h.feed()
            await h.wait_accepted(3)
            h.feed()
            await h.wait_accepted(6)
            await until(lambda: receiver.streamed)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert time.monotonic() - started < 5
        assert receiver.streamed[0] < HUGE // 4  # the connection was closed, not drained
        assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB allocated"
        assert h.sender.stats.requests == {"200": 1, "204": 1} and h.sender.stats.sent == 6
    finally:
        await receiver.stop()


@pytest.mark.parametrize("reply", [Reply(200, stream=60 * 1024, chunk=1024, chunk_delay=1.0),
                                   Reply(200, stall=60, stream=1024)], ids=["slow", "stalled"])
async def test_2xx_with_a_slow_or_stalled_body_does_not_hang(make, reply) -> None:
    receiver = await FakeReceiver([reply]).start()
    try:
        h = await make(receiver, remote_timeout="30s")
        started = time.monotonic()
        h.feed()
        await h.wait_accepted(3)
        h.feed()
        await h.wait_accepted(6, seconds=3)
        assert time.monotonic() - started < 3
        assert h.sender.stats.sent == 6 and not h.sender.stats.retries
        await until(lambda: receiver.streamed)  # the receiver saw the client go away
        assert receiver.streamed[0] < 60 * 1024
    finally:
        await receiver.stop()


async def test_huge_error_body_is_read_up_to_1_kib_for_the_log(make, caplog) -> None:
    receiver = await FakeReceiver([Reply(500, stream=HUGE)]).start()
    try:
        h = await make(receiver)
        tracemalloc.start()
        try:
            h.feed()
            await h.wait_accepted(3)
            await until(lambda: receiver.streamed)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert receiver.streamed[0] < HUGE // 4
        assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB allocated"
        assert h.sender.stats.retries == {"500": 1}
        logged = [r.kv["err"] for r in caplog.records if "retrying" in r.getMessage()]
        assert logged and 0 < len(logged[0]) <= ERROR_BODY_BYTES and set(logged[0]) == {"x"}
    finally:
        await receiver.stop()


@pytest.mark.parametrize(("status", "outcome"), [(400, "rejected"), (413, "split"), (401, "parked"),
                                                 (503, "retried")])
async def test_the_status_decides_even_when_the_error_body_never_comes(make, status, outcome) -> None:
    receiver = await FakeReceiver([Reply(status, stall=30)]).start()
    try:
        h = await make(receiver, remote_timeout="1s", queue={"batch_send_deadline": "1s"})
        h.feed(2)
        await until(lambda: h.sender.stats.sent + sum(h.sender.stats.failed.values()) == 6)
        assert h.sender.stats.requests[str(status)] == 1 and "timeout" not in h.sender.stats.requests
        if outcome == "rejected":
            assert h.sender.stats.failed == {"http_400": 6}
        elif outcome == "split":
            assert len(receiver.accepted) == 2 and h.sender.stats.sent == 6
        elif outcome == "parked":
            assert h.delays == [300.0] and h.sender.stats.sent == 6
        else:
            assert h.sender.stats.retries == {"503": 1} and h.sender.stats.sent == 6
    finally:
        await receiver.stop()


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, "\u00b2", None), (429, "\u0663", None), (503, "\uff17", None), (429, "9" * 400, 300.0), (429, "", None),
     (429, "1.5", None), (503, "3600, 5", None), (429, "0x10", None), (429, "Thu, 01 Jan 1970 00:00:00 GMT", 1.0),
     (503, "Mon, 01 Jan 9999 00:00:00 GMT", 300.0), (429, "Fri, 31 Dec 99999 23:59:59 GMT", None),
     (429, "Tue, 30 Feb 2027 10:00:00 GMT", None)],
    ids=["superscript", "arabic-indic", "fullwidth", "400-digits", "empty", "fraction", "list", "hex",
         "epoch", "year-9999", "year-99999", "february-30"],
)
async def test_bad_retry_after_falls_back_to_the_backoff(make, status, retry_after, expected) -> None:
    receiver = await FakeReceiver([Reply(status, {"Retry-After": retry_after})]).start()
    try:
        h = await make(receiver)
        h.feed()
        await h.wait_accepted(3)
        assert h.delays == [1.0 if expected is None else expected]
        assert h.sender.stats.retries == {str(status): 1} and len(receiver.requests) == 2
    finally:
        await receiver.stop()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_status_codes_follow_the_rules_and_lose_nothing(make, seed) -> None:
    rng = random.Random(seed)
    # Half from the whole range, half from the codes with a rule of their own, so that every rule comes up.
    statuses = [rng.choice(NOTABLE) if rng.random() < 0.5 else rng.randint(100, 599) for _ in range(60)]
    assert {_rule(s) for s in statuses} == {"ok", "retry", "auth", "split", "reject"}
    receiver = await FakeReceiver([Reply(s, body=b"because") for s in statuses]).start()
    try:
        h = await make(receiver, remote_timeout="400ms", queue={"max_samples_per_send": 6})
        settled = lambda: h.sender.stats.sent + sum(h.sender.stats.failed.values()) == sum(h.fed)  # noqa: E731
        for _ in range(100):  # two results (6 samples) at a time until the script is used up
            if len(receiver.requests) >= len(statuses):
                break
            h.feed(2)
            await until(settled, seconds=30)
        assert len(receiver.requests) >= len(statuses)
        assert h.task is not None and not h.task.done()
        replies = statuses + [204] * (len(receiver.requests) - len(statuses))
        _check_each_step(receiver.requests, replies)
        _check_stats(h, replies)
        # Every sample fed was either accepted once or dead-lettered once, never both, never twice.
        accepted, dead = receiver.accepted_series(), _dead_letters(h)
        assert len(accepted) + len(dead) == sum(h.fed) == len(set(accepted) | set(dead))
        assert h.sender.stats.sent == len(accepted) and sum(h.sender.stats.failed.values()) == len(dead)
    finally:
        await receiver.stop()


def _rule(status: int) -> str:
    """What RELIABILITY.md §6.1 says to do (1xx other than 101: aiohttp waits for a final answer, a timeout)."""
    if 200 <= status < 300:
        return "ok"
    if status in (401, 403):
        return "auth"
    if status == 413:
        return "split"
    if status >= 500 or status == 429 or (status < 200 and status != 101):
        return "retry"
    return "reject"


def _check_each_step(requests: list[Received], replies: list[int]) -> None:
    for i, (request, status) in enumerate(zip(requests, replies, strict=True)):
        rule = _rule(status)
        after = requests[i + 1] if i + 1 < len(requests) else None
        if after is None:
            assert rule in ("ok", "reject") or (rule == "split" and len(request.series) == 1), (i, status)
        elif rule in ("retry", "auth"):
            same = after.body == request.body
            assert same, f"request {i} got {status}: the same bytes must come again"
        elif rule == "split" and len(request.series) > 1:
            assert set(after.series) < set(request.series), f"request {i} got 413: a half must come next"
        else:
            same = after.body == request.body
            assert not same, f"request {i} got {status}: it must not be sent again"


def _check_stats(h, replies: list[int]) -> None:
    stats = h.sender.stats
    informational = sum(1 for s in replies if s < 200 and s != 101)
    retried = Counter(str(s) for s in replies if _rule(s) == "retry" and s >= 200)
    assert {k: v for k, v in stats.retries.items() if k not in ("timeout", "network")} == retried
    assert stats.retries.get("timeout", 0) + stats.retries.get("network", 0) == informational
    assert sum(stats.requests.values()) == len(replies)
    auth = sum(1 for s in replies if _rule(s) == "auth")
    assert h.delays.count(300.0) == auth
    assert len(h.delays) - auth == sum(retried.values()) + informational
    rejected = {f"http_{s}" for s in replies if _rule(s) == "reject"}
    assert set(stats.failed) <= rejected | {"too_large"}


def _dead_letters(h) -> list[Series]:
    out: list[Series] = []
    for path in sorted(h.queue.directory.glob("dead-letter*.seg")):
        for record, _ in parse(path.read_bytes())[0]:
            request = remote_pb2.WriteRequest.FromString(record.payload)
            out.extend((tuple((lb.name, lb.value) for lb in ts.labels), s.value, s.timestamp)
                       for ts in request.timeseries for s in ts.samples)
    return out
