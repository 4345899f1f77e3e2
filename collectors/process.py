"""Process checks: is a named service (DMS, mail, web server) running on this host."""

from __future__ import annotations

import asyncio
import re
from typing import Literal

import psutil
from pydantic import model_validator

from agent.errors import Outcome
from collectors.base import CollectorSpec, MetricSpec, ProbeContext, Settings

METRICS = (
    MetricSpec("egov_process_up", "gauge", "1 if at least min_count processes match the check's target.", ("name",)),
    MetricSpec("egov_process_num_procs", "gauge", "Number of processes matching the check's target.", ("name",)),
)


class ProcessSettings(Settings):
    """How a target names a process: its executable name, or a regex over its command line."""

    match: Literal["name", "cmdline"] = "name"
    min_count: int = 1

    @model_validator(mode="after")
    def _positive(self) -> ProcessSettings:
        if self.min_count < 1:
            raise ValueError("min_count must be at least 1")
        return self


async def probe_process(ctx: ProbeContext, settings: ProcessSettings) -> bool:
    """Count the processes matching the target; success when at least `min_count` run."""
    if settings.match == "cmdline":
        count = await asyncio.to_thread(_count_cmdline, re.compile(ctx.target))
    else:
        count = await asyncio.to_thread(_count_name, ctx.target)
    up = count >= settings.min_count
    ctx.sink.add("egov_process_up", 1.0 if up else 0.0, ctx.target)
    ctx.sink.add("egov_process_num_procs", count, ctx.target)
    if not up:
        return ctx.fail(Outcome.MISMATCH, "%d processes match %r, want at least %d", count, ctx.target,
                        settings.min_count)
    return True


def check_process_target(target: str, settings: ProcessSettings) -> None:
    """A cmdline target must be a valid regular expression."""
    if settings.match == "cmdline":
        try:
            re.compile(target)
        except re.error as err:
            raise ValueError(f"target {target!r} is not a valid regular expression: {err}") from None


SPEC = CollectorSpec(
    kind="process",
    settings=ProcessSettings,
    probe=probe_process,
    metrics=METRICS,
    builtin_modules={"process": {"kind": "process", "timeout": "10s"}},
    check_target=check_process_target,
)


def _count_name(name: str) -> int:
    count = 0
    for proc in psutil.process_iter(["name", "exe"]):
        info = proc.info
        exe = info.get("exe") or ""
        if info.get("name") == name or exe.rsplit("/", 1)[-1] == name:
            count += 1
    return count


def _count_cmdline(pattern: re.Pattern[str]) -> int:
    count = 0
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if pattern.search(" ".join(cmdline)):
            count += 1
    return count
