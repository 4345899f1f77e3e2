"""One place that turns a run of a check on a target into a result: deadline, outcome, samples."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from agent.errors import Outcome, ProbeError
from collectors.base import CollectorSpec, LogLine, MetricSink, MetricSpec, ProbeContext, Sample

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """One check on one target, with everything a run needs."""

    check: str
    target: str
    module: str
    service: str
    interval: float
    timeout: float
    spec: CollectorSpec[Any]
    settings: Any
    fingerprint: str = ""
    state_dir: str = ""
    """The agent's state directory, for collectors that keep state across runs and restarts ("" = none)."""
    catalog: dict[str, MetricSpec] = field(default_factory=dict, compare=False)
    """The metrics this job may emit; filled from spec and settings when left empty."""

    def __post_init__(self) -> None:
        if not self.catalog:
            object.__setattr__(self, "catalog", self.spec.catalog_for(self.settings))

    @property
    def key(self) -> tuple[str, str]:
        """(check, target): unique within a config."""
        return (self.check, self.target)

    @property
    def kind(self) -> str:
        """The probe kind this job runs."""
        return self.spec.kind


@dataclass(slots=True)
class ProbeResult:
    """What one run produced."""

    job: Job
    success: bool
    outcome: Outcome
    duration: float
    finished_at: float
    samples: list[Sample]
    error: str = ""
    lines: list[LogLine] = field(default_factory=list)
    partial_errors: dict[str, int] = field(default_factory=dict)


class Runner:
    """Runs jobs under a global concurrency cap, one deadline per run; never raises for a probe's failure."""

    def __init__(self, max_concurrent: int) -> None:
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._crashed: set[tuple[str, str, str]] = set()

    def resize(self, max_concurrent: int) -> None:
        """Use a new concurrency cap for runs that start from now on."""
        self._semaphore = asyncio.Semaphore(max_concurrent)

    async def run(self, job: Job) -> ProbeResult:
        """Run one job to a result; cancellation propagates, every other exception becomes an outcome."""
        async with self._semaphore:
            return await run_job(job, self._crashed)


async def run_job(job: Job, crashed: set[tuple[str, str, str]] | None = None) -> ProbeResult:
    """Run a job once with its deadline; the result's outcome says why it ended."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    ctx = ProbeContext(job.check, job.module, job.target, started + job.timeout, MetricSink(job.catalog),
                       state_dir=job.state_dir)
    try:
        async with asyncio.timeout_at(ctx.deadline):
            success = await job.spec.probe(ctx, job.settings)
    except ProbeError as err:
        success = ctx.fail(err.outcome, "%s", err)
    except TimeoutError:
        success = ctx.fail(Outcome.TIMEOUT, "no result within the module's timeout of %gs", job.timeout)
    except Exception as err:  # noqa: BLE001 - a collector bug must not stop the schedule
        success = ctx.fail(Outcome.ERROR, "unexpected %s: %s", type(err).__name__, err)
        _log_crash_once(job, err, crashed)
    if success:
        ctx.outcome = Outcome.SUCCESS
    elif ctx.outcome is Outcome.SUCCESS:
        ctx.fail(Outcome.ERROR, "the probe failed without giving a reason")
    return ProbeResult(
        job=job,
        success=bool(success),
        outcome=ctx.outcome,
        duration=loop.time() - started,
        finished_at=time.time(),
        samples=ctx.sink.samples(),
        error=ctx.error,
        lines=ctx.lines,
        partial_errors=ctx.partial_errors,
    )


def _log_crash_once(job: Job, err: Exception, crashed: set[tuple[str, str, str]] | None) -> None:
    key = (job.check, job.target, type(err).__name__)
    if crashed is not None and key in crashed:
        log.debug("probe crashed again", extra={"kv": {"check": job.check, "target": job.target}})
        return
    if crashed is not None:
        crashed.add(key)
    log.error(
        "probe crashed; counted as outcome=error, further crashes of this kind are logged at debug",
        exc_info=err,
        extra={"kv": {"check": job.check, "target": job.target, "kind": job.kind}},
    )
