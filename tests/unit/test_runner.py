"""The runner: one deadline per run, exceptions become outcomes, cancellation propagates, concurrency capped."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.errors import ConnectionFailed, Outcome
from agent.runner import Job, Runner, run_job
from collectors.base import CollectorSpec, MetricSpec, ProbeContext, Settings

GAUGE = MetricSpec("egov_test_value", "gauge", "A test value.", ("part",))


class Behaviour(Settings):
    """What the test probe does."""

    sleep: float = 0.0
    action: str = "ok"


async def probe_test(ctx: ProbeContext, settings: Behaviour) -> bool:
    ctx.sink.add("egov_test_value", 1, "a")
    if settings.sleep:
        await asyncio.sleep(settings.sleep)
    match settings.action:
        case "fail":
            return ctx.fail(Outcome.MISMATCH, "value %d is not %d", 1, 2)
        case "raise_probe_error":
            raise ConnectionFailed("connection refused by 127.0.0.1:1")
        case "crash":
            raise KeyError("bug")
        case "silent_false":
            return False
        case "undeclared":
            ctx.sink.add("egov_not_declared", 1)
    return True


SPEC = CollectorSpec("test", Behaviour, probe_test, (GAUGE,))


def job(timeout: float = 1.0, **behaviour: object) -> Job:
    return Job("c", "t", "m", "other", 10.0, timeout, SPEC, Behaviour(**behaviour))  # type: ignore[arg-type]


async def test_success_keeps_samples() -> None:
    result = await run_job(job())
    assert result.success
    assert result.outcome is Outcome.SUCCESS
    assert [(s.name, s.labels, s.value) for s in result.samples] == [("egov_test_value", (("part", "a"),), 1.0)]
    assert result.error == ""


@pytest.mark.parametrize(
    ("action", "outcome", "error"),
    [
        ("fail", Outcome.MISMATCH, "value 1 is not 2"),
        ("raise_probe_error", Outcome.CONNECTION_FAILED, "connection refused by 127.0.0.1:1"),
        ("crash", Outcome.ERROR, "unexpected KeyError: 'bug'"),
        ("silent_false", Outcome.ERROR, "the probe failed without giving a reason"),
        ("undeclared", Outcome.ERROR, "unexpected ValueError: metric 'egov_not_declared' is not declared"),
    ],
)
async def test_failures_become_outcomes(action: str, outcome: Outcome, error: str) -> None:
    result = await run_job(job(action=action))
    assert not result.success
    assert result.outcome is outcome
    assert result.error.startswith(error)


async def test_timeout_ends_the_run_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await run_job(job(timeout=0.2, sleep=5))
    assert result.outcome is Outcome.TIMEOUT
    assert 0.19 <= loop.time() - started < 1.0
    assert result.error == "no result within the module's timeout of 0.2s"


async def test_crash_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    crashed: set[tuple[str, str, str]] = set()
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            await run_job(job(action="crash"), crashed)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


async def test_cancellation_propagates() -> None:
    task = asyncio.create_task(run_job(job(timeout=5, sleep=5)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_concurrency_cap() -> None:
    runner = Runner(max_concurrent=2)
    running = 0
    peak = 0

    async def counting(ctx: ProbeContext, settings: Behaviour) -> bool:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return True

    spec = CollectorSpec("count", Behaviour, counting, ())
    jobs = [Job("c", str(i), "m", "other", 10.0, 1.0, spec, Behaviour()) for i in range(6)]
    results = await asyncio.gather(*(runner.run(j) for j in jobs))
    assert all(r.success for r in results)
    assert peak == 2
