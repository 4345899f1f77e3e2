"""The scheduler: intervals with jitter, no overlapping runs (skips counted), a slow job never delays another."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

from agent.runner import Job, Runner
from agent.scheduler import Scheduler
from collectors.base import CollectorSpec, ProbeContext, Settings


class Sleep(Settings):
    """How long the test probe takes."""

    seconds: float = 0.0


def make_job(check: str, interval: float, sleep: float, spec: CollectorSpec[Sleep], target: str = "t") -> Job:
    return Job(check, target, "m", "other", interval, interval * 10, spec, Sleep(seconds=sleep),
               fingerprint=f"{check}-{interval}-{sleep}")


class Recorder:
    """A probe kind that records when each run starts and ends, and the peak overlap per job."""

    def __init__(self) -> None:
        self.starts: dict[str, list[float]] = {}
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.spec = CollectorSpec("rec", Sleep, self.probe, ())

    async def probe(self, ctx: ProbeContext, settings: Sleep) -> bool:
        loop = asyncio.get_running_loop()
        self.starts.setdefault(ctx.check, []).append(loop.time())
        self.running[ctx.check] = self.running.get(ctx.check, 0) + 1
        self.peak[ctx.check] = max(self.peak.get(ctx.check, 0), self.running[ctx.check])
        try:
            await asyncio.sleep(settings.seconds)
        finally:
            self.running[ctx.check] -= 1
        return True


async def run_for(scheduler: Scheduler, jobs: list[Job], seconds: float) -> None:
    scheduler.start()
    scheduler.sync(jobs)
    await asyncio.sleep(seconds)
    await scheduler.shutdown(timeout=2)


async def test_slow_job_is_skipped_not_stacked_and_never_delays_a_fast_one() -> None:
    recorder = Recorder()
    runner = Runner(max_concurrent=8)
    skipped: list[str] = []
    scheduler = Scheduler(runner.run, lambda job: skipped.append(job.check))
    slow = make_job("slow", interval=0.3, sleep=1.5, spec=recorder.spec)
    fast = make_job("fast", interval=0.2, sleep=0.0, spec=recorder.spec)
    await run_for(scheduler, [slow, fast], 3.0)
    assert recorder.peak["slow"] == 1
    assert "slow" in skipped and "fast" not in skipped
    fast_starts = recorder.starts["fast"]
    gaps = [b - a for a, b in itertools.pairwise(fast_starts)]
    assert len(fast_starts) >= 8
    assert max(gaps) < 0.2 + 0.15, gaps  # interval + scheduling slack
    assert abs(sum(gaps) / len(gaps) - 0.2) < 0.004, gaps  # no drift: the interval is kept on average
    assert len(recorder.starts["slow"]) <= 3


async def test_shutdown_cancels_runs_in_flight() -> None:
    recorder = Recorder()
    runner = Runner(max_concurrent=8)
    scheduler = Scheduler(runner.run, lambda job: None)
    scheduler.start()
    scheduler.sync([make_job("long", interval=0.5, sleep=30, spec=recorder.spec)])
    for _ in range(100):
        if scheduler.in_flight:
            break
        await asyncio.sleep(0.1)
    assert scheduler.in_flight == 1
    loop = asyncio.get_running_loop()
    started = loop.time()
    await scheduler.shutdown(timeout=5)
    assert loop.time() - started < 1
    assert scheduler.in_flight == 0
    assert recorder.running["long"] == 0


async def test_sync_touches_only_what_changed() -> None:
    recorder = Recorder()
    scheduler = Scheduler(Runner(4).run, lambda job: None)
    scheduler.start()
    a = make_job("a", 60, 0, recorder.spec)
    b = make_job("b", 60, 0, recorder.spec)
    c = make_job("c", 60, 0, recorder.spec)
    assert scheduler.sync([a, b, c]) == (3, 0, 0)
    times = scheduler.next_runs()
    b2 = dataclasses.replace(b, fingerprint="b-changed-settings")
    c2 = dataclasses.replace(c, interval=120.0, fingerprint="c-changed-interval")
    d = make_job("d", 60, 0, recorder.spec)
    assert scheduler.sync([b2, c2, d]) == (1, 2, 1)
    after = scheduler.next_runs()
    assert set(after) == {("b", "t"), ("c", "t"), ("d", "t")}
    assert after[("b", "t")] == times[("b", "t")]
    assert {j.check: j for j in scheduler.jobs()}["b"].fingerprint == "b-changed-settings"
    await scheduler.shutdown(timeout=1)
