"""The retry rules (RELIABILITY.md §6.1, §6.2) against a scripted receiver, with a recorded, instant sleep."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import random
import time
from collections.abc import AsyncIterator

import pytest
from fakes.rw_harness import SPEC, until
from fakes.rw_receiver import FakeReceiver, Reply, value_bits

from agent import __version__
from agent.runner import Job
from collectors.base import Settings
from exporters.remote_write.config import RemoteWriteConfig
from exporters.remote_write.queue import parse
from exporters.remote_write.sender import Sender


@pytest.fixture
async def receiver() -> AsyncIterator[FakeReceiver]:
    fake = await FakeReceiver().start()
    yield fake
    await fake.stop()


async def test_rw1_headers_and_body(make, receiver) -> None:
    h = await make(receiver, headers={"X-Scope-OrgID": "tenant-1"})
    h.feed(3, samples=2)
    await h.wait_accepted(12)
    headers = receiver.requests[0].headers
    assert headers["Content-Encoding"] == "snappy"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert headers["User-Agent"] == f"egov-agent/{__version__}"
    assert headers["X-Scope-OrgID"] == "tenant-1"
    assert "Authorization" not in headers
    assert not receiver.requests[0].body.startswith(b"\xff\x06\x00\x00sNaPpY")
    assert h.sender.stats.sent == 12 and h.sender.stats.last_success > 0


async def test_basic_auth_and_bearer_token(make, receiver, tmp_path, monkeypatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    monkeypatch.setenv("RW_TOKEN", "tok-123")
    h = await make(receiver, basic_auth={"username": "office", "password": {"file": str(tmp_path / "pw")}})
    h.feed()
    await h.wait_accepted(3)
    assert receiver.requests[-1].headers["Authorization"] == "Basic " + base64.b64encode(b"office:s3cret").decode()
    h2 = await make(receiver, bearer_token={"env": "RW_TOKEN"})
    h2.feed()
    await h2.wait_accepted(6)
    assert receiver.requests[-1].headers["Authorization"] == "Bearer tok-123"
    assert "s3cret" not in repr(h.config) and "tok-123" not in repr(h2.config)


@pytest.mark.parametrize("header", ["Content-Type", "user-agent", "X-Prometheus-Remote-Write-Version",
                                    "Authorization", "Content-Encoding"])
def test_rw3_reserved_headers_are_refused_at_load(header) -> None:
    with pytest.raises(ValueError, match="set by the agent"):
        RemoteWriteConfig.model_validate({"url": "http://127.0.0.1:1/api/v1/write", "headers": {header: "x"}})


def test_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(ValueError, match="must not carry credentials"):
        RemoteWriteConfig.model_validate({"url": "http://u:p@127.0.0.1:1/api/v1/write"})


async def test_rt1_5xx_retried_same_bytes_with_growing_jittered_backoff(make) -> None:
    receiver = await FakeReceiver([Reply(500), Reply(502), Reply(503), Reply(504), Reply(500)]).start()
    try:
        h = await make(receiver)
        h.feed(2)
        await h.wait_accepted(6)
        bodies = {r.body for r in receiver.requests}
        assert len(receiver.requests) == 6 and len(bodies) == 1
        assert len(receiver.accepted_series()) == 6
        assert h.delays[0] == 1.0
        for attempt, delay in enumerate(h.delays):
            assert 1.0 <= delay <= min(60.0, 2.0**attempt)
        assert h.sender.stats.retries == {"500": 2, "502": 1, "503": 1, "504": 1}
    finally:
        await receiver.stop()


def test_backoff_is_capped_at_max_backoff_with_full_jitter() -> None:
    config = RemoteWriteConfig.model_validate({"url": "http://127.0.0.1:1/w"})
    sender = Sender(config, None, rng=random.Random(3))  # type: ignore[arg-type]
    delays = [sender._delay(attempt, None) for attempt in range(40)]
    assert all(1.0 <= d <= 60.0 for d in delays)
    late = delays[10:]
    assert max(late) > 45 and min(late) < 30  # spread over the whole range, not synchronised


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("7", 7.0), ("100000", 300.0), ("0", 1.0), ("-5", None), ("abc", None), ("1e12", None), ("date", 42.0)],
)
async def test_rt2_429_honours_retry_after_capped_and_ignores_junk(make, retry_after, expected) -> None:
    if retry_after == "date":
        retry_after = email.utils.formatdate(time.time() + 42.5, usegmt=True)
    receiver = await FakeReceiver([Reply(429, {"Retry-After": retry_after})]).start()
    try:
        h = await make(receiver)
        h.feed()
        await h.wait_accepted(3)
        assert len(receiver.requests) == 2
        if expected is None:
            assert h.delays == [1.0]  # the ordinary backoff
        else:
            assert h.delays[0] == pytest.approx(expected, abs=1.0)
        assert h.sender.stats.retries == {"429": 1}
    finally:
        await receiver.stop()


@pytest.mark.parametrize("status", [400, 404, 409, 422, 301])
async def test_rt3_rejected_batch_goes_to_dead_letter_once_and_later_batches_flow(make, status) -> None:
    receiver = await FakeReceiver([Reply(status, body=b"out of order sample\x00" + b"x" * 5000)]).start()
    try:
        h = await make(receiver)
        h.feed()
        await until(lambda: h.sender.stats.failed)
        h.feed()
        await h.wait_accepted(3)
        assert len(receiver.requests) == 2 and h.delays == []
        assert h.sender.stats.failed == {f"http_{status}": 3}
        await asyncio.sleep(0.05)
        dead = (h.queue.directory / "dead-letter.seg").read_bytes()
        records = parse(dead)[0]
        assert len(records) == 1 and records[0][0].samples == 3
    finally:
        await receiver.stop()


async def test_rw5_413_splits_the_batch_and_dead_letters_a_single_oversized_series(make) -> None:
    receiver = await FakeReceiver(max_body=600).start()
    try:
        h = await make(receiver, queue={"batch_send_deadline": "1s"})
        h.feed(10, samples=3)
        await h.wait_accepted(50)
        assert len(receiver.accepted) > 1
        assert all(len(r.body) <= 600 for r in receiver.accepted)
        assert h.sender.stats.sent == 50
    finally:
        await receiver.stop()
    tiny = await FakeReceiver(max_body=10).start()
    try:
        h = await make(tiny)
        h.feed()
        await until(lambda: sum(h.sender.stats.failed.values()) >= 3)
        assert h.sender.stats.failed == {"too_large": 3}
    finally:
        await tiny.stop()


async def test_rt4_401_parks_the_queue_keeps_the_data_and_shows_it(make) -> None:
    receiver = await FakeReceiver([Reply(401), Reply(403)]).start()
    try:
        h = await make(receiver)
        seen: list[float] = []
        h.on_sleep = lambda _: seen.append(h.sender.stats.blocked["auth"])
        h.feed(2)
        await h.wait_accepted(6)
        assert h.delays == [300.0, 300.0] and seen == [1.0, 1.0]
        assert h.sender.stats.blocked["auth"] == 0.0
        assert len(receiver.requests) == 3 and not h.sender.stats.failed
    finally:
        await receiver.stop()


async def test_rt5_network_errors_and_timeouts_are_retried(make) -> None:
    receiver = await FakeReceiver([Reply(drop=True), Reply(delay=2.0)]).start()
    try:
        h = await make(receiver, remote_timeout="300ms")
        h.feed()
        await h.wait_accepted(3)
        assert h.sender.stats.retries == {"network": 1, "timeout": 1}
    finally:
        await receiver.stop()


async def test_connection_refused_is_retried_until_the_receiver_comes(make, tmp_path) -> None:
    receiver = await FakeReceiver().start()
    url = receiver.url
    await receiver.stop()
    dead = FakeReceiver()
    dead.url = url
    h = await make(dead)
    h.feed()
    await until(lambda: h.sender.stats.retries.get("network", 0) >= 3)
    assert h.queue.stats.samples == 3


async def test_one_sample_per_series_per_request(make, receiver) -> None:
    h = await make(receiver, queue={"one_sample_per_series": True, "batch_send_deadline": "1s"})
    h.feed(5, check="a")
    h.feed(5, check="b")
    await h.wait_accepted(30)
    for request in receiver.accepted:
        keys = [labels for labels, _, _ in request.series]
        assert len(keys) == len(set(keys))
    stamps: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for labels, _, ts in receiver.accepted_series():
        stamps.setdefault(labels, []).append(ts)
    assert all(v == sorted(v) and len(v) == 5 for v in stamps.values())


async def test_clock_skew_from_the_date_header(make) -> None:
    receiver = await FakeReceiver(default=Reply(204, {"Date": email.utils.formatdate(time.time() - 3600,
                                                                                  usegmt=True)})).start()
    try:
        h = await make(receiver)
        h.feed()
        await h.wait_accepted(3)
        assert h.sender.stats.clock_skew == pytest.approx(3600, abs=2)
    finally:
        await receiver.stop()


async def test_stale_marker_reaches_the_receiver_bit_exact(make, receiver) -> None:
    h = await make(receiver)
    h.feed(samples=2)
    job = Job("c", "t", "m", "other", 10.0, 5.0, SPEC, Settings())
    fragments = h.encoder.remove(job.key)
    h.queue.append(fragments)
    h.sender.notify(4)
    await h.wait_accepted(8)
    stale = [v for _, v, _ in receiver.accepted_series() if value_bits(v) == 0x7FF0000000000002]
    assert len(stale) == 4
