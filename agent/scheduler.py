"""Per-job interval scheduling with jitter on APScheduler 3.x; the only module that imports apscheduler."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent.runner import Job

log = logging.getLogger(__name__)
# APScheduler logs every run at INFO; one line per run is noise at a few hundred checks.
logging.getLogger("apscheduler").setLevel(logging.WARNING)

FIRST_RUN_SPREAD_SECONDS = 60.0
"""First runs come at a random moment within min(interval, this): spread, yet every check reports within a minute."""


class Scheduler:
    """Runs each job every `interval` from a random phase; never two runs of one job at once; skips reported."""

    def __init__(self, run: Callable[[Job], Awaitable[object]], on_skip: Callable[[Job], None]) -> None:
        self._run = run
        self._on_skip = on_skip
        self._jobs: dict[str, Job] = {}
        self._in_flight: set[asyncio.Task[object]] = set()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)

    def start(self) -> None:
        """Start firing jobs on the running event loop."""
        self._scheduler.start()

    def sync(self, jobs: list[Job]) -> tuple[int, int, int]:
        """Make the schedule match `jobs`, touching only what changed; returns (added, changed, removed)."""
        wanted = {_job_id(job): job for job in jobs}
        removed = [job_id for job_id in self._jobs if job_id not in wanted]
        for job_id in removed:
            self._scheduler.remove_job(job_id)
            del self._jobs[job_id]
        added = changed = 0
        for job_id, job in wanted.items():
            current = self._jobs.get(job_id)
            if current is not None and current.fingerprint == job.fingerprint:
                continue
            self._jobs[job_id] = job
            if current is None:
                added += 1
                self._add(job_id, job, first_run_in=random.uniform(0, min(job.interval, FIRST_RUN_SPREAD_SECONDS)))
            elif current.interval != job.interval:
                changed += 1
                self._scheduler.remove_job(job_id)
                self._add(job_id, job, first_run_in=random.uniform(0, min(job.interval, FIRST_RUN_SPREAD_SECONDS)))
            else:
                changed += 1  # same timing: the next run simply picks up the new job
        return added, changed, len(removed)

    def is_scheduled(self, job: Job) -> bool:
        """Whether a job with this check and target is still in the schedule."""
        return _job_id(job) in self._jobs

    def jobs(self) -> list[Job]:
        """The jobs currently scheduled."""
        return list(self._jobs.values())

    def next_runs(self) -> dict[tuple[str, str], datetime | None]:
        """When each job runs next, by (check, target)."""
        return {self._jobs[j.id].key: j.next_run_time for j in self._scheduler.get_jobs() if j.id in self._jobs}

    @property
    def in_flight(self) -> int:
        """Runs started and not yet finished."""
        return len(self._in_flight)

    async def shutdown(self, timeout: float) -> None:  # noqa: ASYNC109 - a budget for waiting, not a deadline
        """Stop firing, cancel runs in flight and wait up to `timeout` seconds for them to end."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def _add(self, job_id: str, job: Job, first_run_in: float) -> None:
        # The jitter is the random phase of the first run, as Prometheus offsets its scrapes: IntervalTrigger's
        # own jitter is added to the previous, already jittered fire time, so intervals would drift longer.
        trigger = IntervalTrigger(seconds=job.interval, timezone=UTC)
        self._scheduler.add_job(
            self._fire,
            trigger,
            args=(job_id,),
            id=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(job.interval / 2)),
            next_run_time=datetime.now(UTC) + timedelta(seconds=first_run_in),
        )

    async def _fire(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            return
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            await self._run(job)
        finally:
            self._in_flight.discard(task)

    def _skipped(self, event: JobEvent) -> None:
        job = self._jobs.get(event.job_id)
        if job is not None:
            log.debug("run skipped", extra={"kv": {"check": job.check, "target": job.target}})
            self._on_skip(job)


def _job_id(job: Job) -> str:
    # Check names cannot contain "|" (see agent.config.Name), so the id splits back unambiguously.
    return f"{job.check}|{job.target}"
