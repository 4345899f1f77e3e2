"""The latest result of every job, with the last success and last error kept for the status page."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agent.runner import ProbeResult

log = logging.getLogger(__name__)
JobKey = tuple[str, str]


@dataclass(slots=True)
class JobStatus:
    """What the status page shows for one job."""

    last: ProbeResult
    last_success_at: float | None
    last_error: str
    last_error_at: float | None
    state_changes: int
    last_change_at: float
    runs: dict[str, int]


class ResultStore:
    """Keeps the latest result per job and tells subscribers of each new one, synchronously."""

    def __init__(self) -> None:
        self._status: dict[JobKey, JobStatus] = {}
        self._subscribers: list[Callable[[ProbeResult, JobStatus], None]] = []
        self._removers: list[Callable[[JobKey], None]] = []

    def subscribe(
        self, on_result: Callable[[ProbeResult, JobStatus], None], on_remove: Callable[[JobKey], None]
    ) -> None:
        """Call `on_result` for every new result and `on_remove` when a job goes away."""
        self._subscribers.append(on_result)
        self._removers.append(on_remove)

    def put(self, result: ProbeResult) -> None:
        """Store a result, log a state change once, and hand it to every subscriber."""
        key = result.job.key
        previous = self._status.get(key)
        at = result.finished_at
        if previous is None:
            status = JobStatus(result, None, "", None, 0, at, {})
            if not result.success:
                _log_change(result, "unknown")
        else:
            status = previous
            if previous.last.success != result.success:
                status.state_changes += 1
                status.last_change_at = at
                _log_change(result, "up" if previous.last.success else "down")
            status.last = result
        outcome = str(result.outcome)
        status.runs[outcome] = status.runs.get(outcome, 0) + 1
        if result.success:
            status.last_success_at = at
        else:
            status.last_error = result.error
            status.last_error_at = at
        self._status[key] = status
        for subscriber in self._subscribers:
            subscriber(result, status)

    def status(self) -> list[JobStatus]:
        """Every job's status, ordered by service, check and target."""
        return sorted(
            self._status.values(), key=lambda s: (s.last.job.service, s.last.job.check, s.last.job.target)
        )

    def latest(self) -> Iterable[ProbeResult]:
        """The latest result of every job."""
        return (s.last for s in self._status.values())

    def get(self, key: JobKey) -> JobStatus | None:
        """One job's status, if it has run."""
        return self._status.get(key)

    def retain(self, keys: set[JobKey]) -> None:
        """Forget every job not in `keys`, so its series leave /metrics."""
        for key in [k for k in self._status if k not in keys]:
            del self._status[key]
            for remover in self._removers:
                remover(key)


def _log_change(result: ProbeResult, before: str) -> None:
    job = result.job
    after = "up" if result.success else "down"
    fields = {"check": job.check, "target": job.target, "service": job.service, "from": before, "to": after}
    if result.success:
        log.info("check state changed", extra={"kv": fields})
    else:
        fields.update(outcome=str(result.outcome), error=result.error)
        log.warning("check state changed", extra={"kv": fields})
