"""Named, timed steps of a mail check: egov_mail_step_duration_seconds{step} and egov_mail_failed_step_info{step}."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agent.errors import Outcome, ProbeError
from collectors.base import MetricSpec, ProbeContext

METRICS = (
    MetricSpec("egov_mail_step_duration_seconds", "gauge",
               "Duration of one step of a mail check (connect, greeting, starttls, auth, ...), in seconds.", ("step",)),
    MetricSpec("egov_mail_failed_step_info", "gauge", "1 for the step of a mail check that failed.", ("step",)),
)


class StepFailed(ProbeError):
    """An expected failure inside a mail step; the step name is added by Steps."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


class Steps:
    """Runs the steps of one check: each is timed, bounded by the run's deadline, and named when it fails."""

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx
        self.failed: str | None = None
        self._durations: dict[str, float] = {}

    @asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        """Time the block as step `name`; library errors inside become StepFailed with an outcome and the step name."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.ctx.log("step %s", name)
        try:
            async with asyncio.timeout_at(self.ctx.step_deadline()):
                yield
        except StepFailed as err:
            self.failed = name
            raise StepFailed(err.outcome, f"{name}: {err}") from None
        except TimeoutError:
            self.failed = name
            raise StepFailed(Outcome.TIMEOUT, f"{name}: no answer within the module's timeout") from None
        except ssl.SSLError as err:
            self.failed = name
            raise StepFailed(Outcome.TLS_FAILED, f"{name}: TLS failed: {reason(err)}") from None
        except (OSError, EOFError) as err:
            self.failed = name
            raise StepFailed(Outcome.CONNECTION_FAILED, f"{name}: connection lost: {reason(err)}") from None
        finally:
            self._durations[name] = self._durations.get(name, 0.0) + loop.time() - started

    def record(self) -> None:
        """Add the duration of every step run so far, and the failed step if any, to the run's samples."""
        for name, seconds in self._durations.items():
            self.ctx.sink.add("egov_mail_step_duration_seconds", seconds, name)
        if self.failed is not None:
            self.ctx.sink.add("egov_mail_failed_step_info", 1, self.failed)


def reason(err: BaseException) -> str:
    """A short, secret-free description of a library error (no `(_ssl.c:1000)` tails)."""
    if isinstance(err, ssl.SSLError):
        text = str(err)
    elif isinstance(err, OSError) and err.strerror:
        text = err.strerror
    else:
        text = str(err) or type(err).__name__
    return re.sub(r" \(_ssl\.c:\d+\)$", "", text)
