"""Every remote-write destination of the agent: fed from the result store, started, reloaded, stopped, measured."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.errors import StartupError
from agent.runner import ProbeResult
from agent.store import JobKey, JobStatus
from exporters.remote_write.config import RemoteWriteConfig

if TYPE_CHECKING:
    from exporters.remote_write.encode import Encoder, Fragment
    from exporters.remote_write.queue import DiskQueue
    from exporters.remote_write.sender import Sender

log = logging.getLogger(__name__)
SYNC_SECONDS = 1.0
DROP_REASONS = ("queue_full", "too_old", "disk", "backpressure")


@dataclass
class _Destination:
    config: RemoteWriteConfig
    queue: DiskQueue
    sender: Sender
    tasks: tuple[asyncio.Task[None], ...]


class RemoteWrite(Collector):
    """Owns the destinations; a prometheus_client collector of their egov_agent_remote_write_* metrics."""

    def __init__(self, office_labels: dict[str, str]) -> None:
        self._office = dict(office_labels)
        self._destinations: dict[str, _Destination] = {}
        self._encoder: Encoder | None = None

    @property
    def destinations(self) -> list[str]:
        """Names of the running destinations."""
        return list(self._destinations)

    async def start(self, configs: list[RemoteWriteConfig], state_dir: str) -> None:
        """Open every destination's queue and start sending; raises StartupError (queue locked, unwritable)."""
        for config in configs:
            await self._start_one(config, state_dir)

    async def apply(self, configs: list[RemoteWriteConfig], state_dir: str) -> tuple[int, int, int]:
        """Reload: stop removed and changed destinations, start new and changed ones; returns the counts."""
        wanted = {c.destination: c for c in configs}
        before = set(self._destinations)
        changed = sum(1 for n in before & set(wanted) if wanted[n] != self._destinations[n].config)
        for name in [n for n in self._destinations if wanted.get(n) != self._destinations[n].config]:
            await self._stop_one(self._destinations.pop(name))
        for name, config in wanted.items():
            if name in self._destinations:
                continue
            try:
                await self._start_one(config, state_dir)
            except StartupError as err:
                log.error("cannot start a remote-write destination", extra={"kv": {"destination": name,
                                                                                    "err": str(err)}})
        return len(set(wanted) - before), changed, len(before - set(wanted))

    async def stop(self, seconds: float) -> None:
        """Stop sending, write what is in memory to disk and unlock, newest destination first, within `seconds`."""
        deadline = time.monotonic() + seconds
        for name in reversed(list(self._destinations)):
            destination = self._destinations.pop(name)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await self._stop_one(destination)

    def set_office(self, office_labels: dict[str, str]) -> None:
        """New office labels for every series from now on."""
        self._office = dict(office_labels)
        if self._encoder is not None:
            self._encoder.set_office(self._office)

    def on_result(self, result: ProbeResult, status: JobStatus) -> None:
        """ResultStore subscriber: encode the result once and queue it for every destination."""
        if self._encoder is not None and self._destinations:
            self._fan_out(self._encoder.encode(result))

    def on_agent_metrics(self, samples: list[tuple[str, tuple[tuple[str, str], ...], float]], at: float) -> None:
        """Queue the agent's own series (so offices that only push are seen as centrally as scraped ones)."""
        if self._encoder is not None and self._destinations:
            self._fan_out(self._encoder.encode_agent(samples, at))

    def on_remove(self, key: JobKey) -> None:
        """ResultStore subscriber: a job left the config; its series get stale markers."""
        if self._encoder is not None and self._destinations:
            self._fan_out(self._encoder.remove(key))

    def collect(self) -> Iterator[Metric]:
        """The self-metrics of every destination, from numbers kept in memory."""
        names, values = ["destination", *self._office], list(self._office.values())
        now = time.time()

        def family(kind: type[Metric], name: str, help_text: str, extra: tuple[str, ...] = ()) -> Metric:
            return kind(name, help_text, labels=[*extra, *names])  # type: ignore[call-arg]

        gauges = {
            "queue_bytes": "Bytes held by the disk queue (and its memory fallback), not yet delivered.",
            "queue_samples": "Samples queued and not yet delivered.",
            "queue_oldest_sample_age_seconds": "Age of the oldest sample not yet delivered (0 when empty).",
            "queue_memory_bytes": "Bytes kept in memory because the disk refused writes.",
            "dead_letter_bytes": "Size of the dead-letter files (batches the receiver refused for good).",
            "last_success_timestamp_seconds": "When a request last succeeded.",
            "clock_skew_seconds": "The agent's clock minus the receiver's, from its Date header (+-0.5 s).",
        }
        out: dict[str, Metric] = {
            key: family(GaugeMetricFamily, f"egov_agent_remote_write_{key}", text) for key, text in gauges.items()
        }
        sent = family(CounterMetricFamily, "egov_agent_remote_write_samples_sent", "Samples delivered.")
        failed = family(CounterMetricFamily, "egov_agent_remote_write_samples_failed",
                        "Samples the receiver refused for good (kept in the dead-letter file), by reason.",
                        ("reason",))
        dropped = family(CounterMetricFamily, "egov_agent_remote_write_samples_dropped",
                         "Samples dropped before delivery, by reason (queue_full, too_old, disk, backpressure).",
                         ("reason",))
        retries = family(CounterMetricFamily, "egov_agent_remote_write_retries",
                         "Requests retried, by HTTP status code (or network, timeout).", ("code",))
        requests = family(CounterMetricFamily, "egov_agent_remote_write_requests",
                          "Requests sent, by HTTP status code (or network, timeout).", ("code",))
        blocked = family(GaugeMetricFamily, "egov_agent_remote_write_blocked",
                         "1 while the destination is parked (auth: the receiver answered 401/403); data is kept.",
                         ("reason",))
        corruptions = family(CounterMetricFamily, "egov_agent_remote_write_queue_corruptions",
                             "Corrupted queue files or records found (moved to quarantine/), by kind.", ("kind",))
        for name, destination in sorted(self._destinations.items()):
            labels = [name, *values]
            q, s = destination.queue.stats, destination.sender.stats
            age = max(0.0, now - q.head_ms / 1000) if q.samples and q.head_ms else 0.0
            for key, value in (("queue_bytes", q.bytes), ("queue_samples", q.samples),
                               ("queue_oldest_sample_age_seconds", age), ("queue_memory_bytes", q.memory_bytes),
                               ("dead_letter_bytes", q.dead_letter_bytes),
                               ("last_success_timestamp_seconds", s.last_success),
                               ("clock_skew_seconds", s.clock_skew)):
                out[key].add_metric(labels, value)  # type: ignore[attr-defined]
            sent.add_metric(labels, s.sent)  # type: ignore[attr-defined]
            for reason, count in sorted(s.failed.items()):
                failed.add_metric([reason, *labels], count)  # type: ignore[attr-defined]
            for reason in sorted({*DROP_REASONS, *q.dropped}):
                dropped.add_metric([reason, *labels], q.dropped.get(reason, 0))  # type: ignore[attr-defined]
            for code, count in sorted(s.retries.items()):
                retries.add_metric([code, *labels], count)  # type: ignore[attr-defined]
            for code, count in sorted(s.requests.items()):
                requests.add_metric([code, *labels], count)  # type: ignore[attr-defined]
            for reason, value in sorted(s.blocked.items()):
                blocked.add_metric([reason, *labels], value)  # type: ignore[attr-defined]
            for kind, count in sorted(q.corruptions.items()):
                corruptions.add_metric([kind, *labels], count)  # type: ignore[attr-defined]
        yield from out.values()
        yield from (sent, failed, dropped, retries, requests, blocked, corruptions)
        if self._encoder is not None:
            clamped = CounterMetricFamily("egov_agent_remote_write_timestamps_clamped",
                                          "Sample timestamps moved forward because the wall clock went back.",
                                          labels=list(self._office))
            clamped.add_metric(values, self._encoder.clamped)
            yield clamped

    async def _start_one(self, config: RemoteWriteConfig, state_dir: str) -> None:
        from exporters.remote_write.encode import Encoder
        from exporters.remote_write.queue import DiskQueue
        from exporters.remote_write.sender import Sender

        name = config.destination
        q = config.queue
        queue = DiskQueue(Path(state_dir) / "remote_write" / re.sub(r"[^A-Za-z0-9_.-]", "_", name),
                          max_bytes=q.max_bytes, max_age=q.max_age, memory_bytes=q.memory_bytes,
                          dead_letter_bytes=q.dead_letter_bytes)
        await queue.open()
        sender = Sender(config, queue)
        tasks = (asyncio.create_task(self._supervise(sender), name=f"remote-write-{name}"),
                 asyncio.create_task(self._sync(queue), name=f"remote-write-sync-{name}"))
        self._destinations[name] = _Destination(config, queue, sender, tasks)
        max_samples = min(d.config.queue.max_samples_per_send for d in self._destinations.values())
        if self._encoder is None:
            self._encoder = Encoder(self._office, max_samples)
        self._encoder.max_samples = max_samples
        log.info("remote-write destination started", extra={"kv": {
            "destination": name, "url": config.safe_url, "queue": str(queue.directory),
            "queued_samples": queue.stats.samples}})

    async def _stop_one(self, destination: _Destination) -> None:
        for task in destination.tasks:
            task.cancel()
        for task in destination.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await destination.queue.close()

    async def _supervise(self, sender: Sender) -> None:
        while True:
            try:
                await sender.run()
            except Exception:  # a bug in the send loop must not stop delivery for good
                log.exception("remote-write sender crashed; restarting in 10s",
                              extra={"kv": {"destination": sender.config.destination}})
            await asyncio.sleep(10)

    async def _sync(self, queue: DiskQueue) -> None:
        while True:
            await asyncio.sleep(SYNC_SECONDS)
            try:
                await queue.sync()
            except Exception:  # a disk surprise must not end the fsync cadence
                log.exception("remote-write queue sync failed", extra={"kv": {"queue": str(queue.directory)}})

    def _fan_out(self, fragments: list[Fragment]) -> None:
        samples = sum(f.samples for f in fragments)
        for destination in self._destinations.values():
            destination.queue.append(fragments)
            destination.sender.notify(samples)
