"""A Sender with its DiskQueue against a FakeReceiver, in the test's event loop, with a recorded, instant sleep."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakes.rw_receiver import FakeReceiver

from agent.errors import Outcome
from agent.runner import Job, ProbeResult
from collectors.base import CollectorSpec, MetricSpec, Sample, Settings
from exporters.remote_write.config import RemoteWriteConfig
from exporters.remote_write.encode import Encoder
from exporters.remote_write.queue import DiskQueue
from exporters.remote_write.sender import Sender

SPEC = CollectorSpec("test", Settings, None, (MetricSpec("egov_test_value", "gauge", "v", ("part",)),))  # type: ignore[arg-type]
OFFICE = {"org_id": "000.00.20.H49", "level": "commune"}


class Harness:
    """A sender with its queue and a receiver; `feed` queues results, `wait_accepted` polls the receiver."""

    def __init__(self, tmp_path: Path, receiver: FakeReceiver, **config: Any) -> None:
        queue = {"batch_send_deadline": "10ms", **config.pop("queue", {})}
        self.config = RemoteWriteConfig.model_validate({"url": receiver.url, "queue": queue, **config})
        self.receiver = receiver
        self.queue = DiskQueue(tmp_path / "queue", max_bytes=self.config.queue.max_bytes,
                               max_age=self.config.queue.max_age, memory_bytes=self.config.queue.memory_bytes,
                               dead_letter_bytes=self.config.queue.dead_letter_bytes)
        self.delays: list[float] = []
        self.on_sleep: Callable[[float], None] = lambda _: None
        self.sender = Sender(self.config, self.queue, rng=random.Random(7), sleep=self._sleep)
        self.encoder = Encoder(OFFICE)
        self.fed: list[int] = []
        self.task: asyncio.Task[None] | None = None

    async def _sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.on_sleep(seconds)
        await asyncio.sleep(0)

    async def start(self) -> None:
        """Open the queue and start the send loop."""
        await self.queue.open()
        self.task = asyncio.create_task(self.sender.run())

    async def stop(self) -> None:
        """Cancel the send loop (which must still be running) and close the queue; once."""
        if self.task is None:
            return
        task, self.task = self.task, None
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError("the send loop ended on its own")
        await self.queue.close()

    def feed(self, results: int = 1, samples: int = 1, check: str = "c") -> None:
        """Queue `results` results of one job, each with `samples` samples plus the two run metrics."""
        job = Job(check, "t", "m", "other", 10.0, 5.0, SPEC, Settings())
        for _ in range(results):
            result = ProbeResult(job, True, Outcome.SUCCESS, 0.5, time.time() - 1000 + len(self.fed),
                                 [Sample("egov_test_value", (("part", str(i)),), float(len(self.fed)))
                                  for i in range(samples)])
            fragments = self.encoder.encode(result)
            self.queue.append(fragments)
            self.sender.notify(sum(f.samples for f in fragments))
            self.fed.append(sum(f.samples for f in fragments))

    async def wait_accepted(self, samples: int, seconds: float = 10.0) -> None:
        """Until the receiver accepted at least `samples` samples."""
        await until(lambda: len(self.receiver.accepted_series()) >= samples, seconds)


async def until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    """Poll `condition` every 10 ms for at most `seconds`."""
    for _ in range(int(seconds * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {seconds}s")
