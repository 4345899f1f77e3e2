"""Sends one destination's queue, oldest first, one request in flight, with the retry rules of RELIABILITY.md §7.

- 2xx: delivered. 5xx, 429 and network errors: the same bytes again after a full-jitter backoff between
  min_backoff and an exponentially growing cap (max_backoff), or after a valid Retry-After (capped).
- 413: the batch is split in halves, each sent on its own; a single series still too large is dead-lettered.
- 401 and 403: the queue is parked, keeping its data, and tried again every auth_retry_interval (>= 5 min).
- any other status (400, 404, 409, 3xx, ...): the batch goes to the dead-letter file, counted; the queue goes on.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent import __version__
from exporters.remote_write import encode
from exporters.remote_write.config import RemoteWriteConfig
from exporters.remote_write.queue import Batch, DiskQueue

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

USER_AGENT = f"egov-agent/{__version__}"
ERROR_BODY_BYTES = 1024
SKEW_WARN_SECONDS = 60.0
SKEW_LOG_INTERVAL = 600.0


@dataclass
class SenderStats:
    """What the self-metrics show for one destination."""

    sent: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    last_success: float = 0.0
    clock_skew: float = 0.0
    blocked: dict[str, float] = field(default_factory=lambda: {"auth": 0.0})

    def count(self, table: dict[str, int], key: str, amount: int = 1) -> None:
        """Add to one cell of a labelled counter."""
        table[key] = table.get(key, 0) + amount


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int | None
    """HTTP status, or None for a network error or timeout."""
    kind: str
    """`ok`, `retry`, `auth`, `split` or `reject`."""
    code: str
    retry_after: float | None = None
    detail: str = ""


class Sender:
    """The send loop of one destination."""

    def __init__(self, config: RemoteWriteConfig, queue: DiskQueue, *, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.config = config
        self.queue = queue
        self.stats = SenderStats()
        self._clock = clock
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._arrived = 0
        self._need = 0
        self._data = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._headers = self._build_headers()
        self._server_name = config.tls_config.server_name if config.tls_config else None
        self._failing = False
        self._skew_logged_at = 0.0

    def notify(self, samples: int) -> None:
        """New samples were queued; wakes the loop once a full batch is there."""
        self._arrived += samples
        if self._arrived >= self._need:
            self._data.set()

    async def run(self) -> None:
        """Send until cancelled."""
        import aiohttp

        q = self.config.queue
        connector = aiohttp.TCPConnector(limit=1, ssl=self._ssl_context(), enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.config.remote_timeout),
            auto_decompress=False, skip_auto_headers=("Accept-Encoding",),
        )
        try:
            while True:
                batch = await self.queue.read(q.max_samples_per_send, q.max_bytes_per_send, q.one_sample_per_series)
                if not batch.records and not batch.expired:
                    await self._wait(q.max_samples_per_send, q.batch_send_deadline)
                    continue
                age = self._clock() - batch.oldest_ms / 1000
                if batch.records and not batch.complete and age < q.batch_send_deadline:
                    await self._wait(q.max_samples_per_send - batch.samples, q.batch_send_deadline - age)
                    continue
                await self._deliver(batch)
        finally:
            await self._session.close()

    async def _wait(self, need: int, seconds: float) -> None:
        self._arrived = 0
        self._need = max(1, need)
        self._data.clear()
        try:
            async with asyncio.timeout(max(0.01, seconds)):
                await self._data.wait()
        except TimeoutError:
            pass

    async def _deliver(self, batch: Batch) -> None:
        if not batch.records:
            await self.queue.ack(batch)
            return
        outcome = await self._send(batch.payload, batch.samples, batch)
        if outcome == "too_old":
            await self.queue.ack(batch, dropped_reason="too_old")
            return
        await self.queue.ack(batch)

    async def _send(self, payload: bytes, samples: int, batch: Batch) -> str:
        """Send one payload until it is delivered, dead-lettered, split or too old; returns what happened."""
        q = self.config.queue
        attempt = 0
        body = await self.queue.run(encode.compress, payload)
        while True:
            answer = await self._post(body)
            self.stats.count(self.stats.requests, answer.code)
            if answer.kind == "ok":
                self.stats.sent += samples
                self.stats.last_success = self._clock()
                if self._failing:
                    self._failing = False
                    log.info("remote-write delivers again", extra={"kv": {"destination": self.config.destination}})
                return "sent"
            if answer.kind == "split":
                parts = await self.queue.run(encode.split, payload)
                if len(parts) == 1:
                    await self._reject(payload, samples, batch, answer, reason="too_large")
                    return "rejected"
                for part in parts:
                    if await self._send(part, _count_series(part), batch) == "too_old":
                        return "too_old"
                return "split"
            if answer.kind == "reject":
                await self._reject(payload, samples, batch, answer, reason=f"http_{answer.code}")
                return "rejected"
            self._log_failure(answer)
            if answer.kind == "auth":
                self.stats.blocked["auth"] = 1.0
                await self._sleep(q.auth_retry_interval)
                self.stats.blocked["auth"] = 0.0
                continue
            self.stats.count(self.stats.retries, answer.code)
            await self._sleep(self._delay(attempt, answer.retry_after))
            attempt += 1
            if batch.newest_ms and batch.newest_ms < (self._clock() - q.max_age) * 1000:
                log.warning("remote-write batch is older than max_age after retries; dropped",
                            extra={"kv": {"destination": self.config.destination}})
                return "too_old"

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        q = self.config.queue
        if retry_after is not None:
            return max(q.min_backoff, min(retry_after, q.retry_after_max))
        ceiling = min(q.max_backoff, q.min_backoff * 2 ** min(attempt, 32))
        return self._rng.uniform(q.min_backoff, ceiling)

    async def _post(self, body: bytes) -> _Answer:
        import aiohttp

        assert self._session is not None
        try:
            async with self._session.post(self.config.url, data=body, headers=self._headers, allow_redirects=False,
                                          server_hostname=self._server_name) as response:
                self._observe_date(response.headers.get("Date"))
                status = response.status
                if 200 <= status < 300:
                    return _Answer(status, "ok", str(status))
                try:
                    detail = (await response.content.read(ERROR_BODY_BYTES)).decode("utf-8", "replace")
                except (TimeoutError, aiohttp.ClientError, OSError) as err:
                    detail = f"body not read: {type(err).__name__}"  # the status decides, not the body
                response.close()
                retry_after = _retry_after(response.headers.get("Retry-After"), self._clock())
                code = str(status)
                if status >= 500 or status == 429:
                    return _Answer(status, "retry", code, retry_after, detail)
                if status in (401, 403):
                    return _Answer(status, "auth", code, None, detail)
                if status == 413:
                    return _Answer(status, "split", code, None, detail)
                return _Answer(status, "reject", code, None, detail)
        except TimeoutError:
            return _Answer(None, "retry", "timeout", None, f"no answer within {self.config.remote_timeout:g}s")
        except (aiohttp.ClientError, OSError, ssl.SSLError) as err:
            return _Answer(None, "retry", "network", None, f"{type(err).__name__}: {err}")

    async def _reject(self, payload: bytes, samples: int, batch: Batch, answer: _Answer, reason: str) -> None:
        self.stats.count(self.stats.failed, reason, samples)
        await self.queue.dead_letter(payload, samples, batch.oldest_ms)
        log.error("remote-write receiver refused a batch; kept in the dead-letter file, not retried",
                  extra={"kv": {"destination": self.config.destination, "status": answer.code, "samples": samples,
                                "body": _printable(answer.detail)}})

    def _log_failure(self, answer: _Answer) -> None:
        if self._failing:
            return
        self._failing = True
        what = ("receiver refused the credentials; parked, data kept, next try in "
                f"{self.config.queue.auth_retry_interval:g}s" if answer.kind == "auth"
                else "remote-write send failed; retrying with backoff, data kept on disk")
        log.warning(what, extra={"kv": {"destination": self.config.destination, "url": self.config.safe_url,
                                        "status": answer.code, "err": _printable(answer.detail)}})

    def _observe_date(self, value: str | None) -> None:
        if not value:
            return
        try:
            server = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        now = self._clock()
        # The Date header has one-second resolution: take the middle of its second.
        self.stats.clock_skew = now - (server + 0.5)
        if abs(self.stats.clock_skew) > SKEW_WARN_SECONDS and now - self._skew_logged_at > SKEW_LOG_INTERVAL:
            self._skew_logged_at = now
            log.warning("the agent's clock differs from the receiver's; samples may be refused as too old or in "
                        "the future: check NTP", extra={"kv": {"destination": self.config.destination,
                                                             "skew_seconds": round(self.stats.clock_skew, 1)}})

    def _build_headers(self) -> dict[str, str]:
        headers = dict(self.config.headers)
        headers.update({
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
            "User-Agent": USER_AGENT,
        })
        if self.config.basic_auth is not None:
            auth = self.config.basic_auth
            token = base64.b64encode(f"{auth.username}:{auth.password.reveal()}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        elif self.config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.config.bearer_token.reveal()}"
        return headers

    def _ssl_context(self) -> Any:
        if not self.config.url.startswith("https://"):
            return False
        from collectors._tls import client_context

        return client_context(self.config.tls_config)


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when missing or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # float() also takes other scripts' digits, or fails on "²"
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - now)


def _count_series(payload: bytes) -> int:
    # Every series in our fragments carries exactly one sample.
    from exporters.remote_write import remote_pb2

    return len(remote_pb2.WriteRequest.FromString(payload).timeseries)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:ERROR_BODY_BYTES]
