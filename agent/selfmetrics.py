"""The agent's own metrics (egov_agent_*, process_*, egov_office_info), kept as plain numbers between scrapes."""

from __future__ import annotations

import bisect
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from agent import __version__
from agent.runner import ProbeResult

RUN_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass(slots=True)
class Histogram:
    """Cumulative-on-read bucket counts, as Prometheus histograms need."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs ending with +Inf."""
        out, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


class SelfMetrics(Collector):
    """Counts runs, skips, reloads and event-loop lag; a prometheus_client collector for a dedicated registry."""

    def __init__(self) -> None:
        self.office_labels: dict[str, str] = {}
        self.office_info: dict[str, str] = {}
        self.runs: dict[tuple[str, str], int] = {}
        self.skipped: dict[str, int] = {}
        self.partial_errors: dict[tuple[str, str], int] = {}
        self.run_durations: dict[str, Histogram] = {}
        self.loop_lag = Histogram(LAG_BUCKETS)
        self.reload_successful = 0.0
        self.reload_success_at = 0.0
        self.jobs = 0
        self.in_flight = 0
        self._process = psutil.Process(os.getpid())
        self._process_stats: dict[str, float] = {}

    def observe_run(self, result: ProbeResult) -> None:
        """Count a finished run by kind and outcome."""
        kind = result.job.kind
        key = (kind, str(result.outcome))
        self.runs[key] = self.runs.get(key, 0) + 1
        histogram = self.run_durations.get(kind)
        if histogram is None:
            histogram = self.run_durations[kind] = Histogram(RUN_DURATION_BUCKETS)
        histogram.observe(result.duration)
        for subsystem, count in result.partial_errors.items():
            partial_key = (kind, subsystem)
            self.partial_errors[partial_key] = self.partial_errors.get(partial_key, 0) + count

    def observe_skip(self, check: str) -> None:
        """Count a run that did not start because the previous one was still going or it was too late."""
        self.skipped[check] = self.skipped.get(check, 0) + 1

    def observe_reload(self, ok: bool) -> None:
        """Record the result of a config (re)load."""
        self.reload_successful = 1.0 if ok else 0.0
        if ok:
            self.reload_success_at = time.time()

    def refresh_process(self) -> None:
        """Read this process's CPU, memory and fds; called off the scrape path, every few seconds."""
        with self._process.oneshot():
            cpu = self._process.cpu_times()
            self._process_stats = {
                "process_cpu_seconds_total": cpu.user + cpu.system,
                "process_resident_memory_bytes": float(self._process.memory_info().rss),
                "process_virtual_memory_bytes": float(self._process.memory_info().vms),
                "process_open_fds": float(self._process.num_fds()),
                "process_start_time_seconds": self._process.create_time(),
            }

    def collect(self) -> Iterator[Metric]:
        """Yield every self-metric from the numbers kept in memory; no I/O here."""
        names, values = list(self.office_labels), list(self.office_labels.values())
        if self.office_info:
            info = GaugeMetricFamily("egov_office_info", "The office this agent speaks for.",
                                     labels=list(self.office_info))
            info.add_metric(list(self.office_info.values()), 1)
            yield info
        build = GaugeMetricFamily("egov_agent_build_info", "A metric with a constant 1 value labelled by the "
                                  "version and Python version of egov-agent.",
                                  labels=["version", "python_version", *names])
        build.add_metric([__version__, platform.python_version(), *values], 1)
        yield build
        yield _gauge("egov_agent_config_last_reload_successful", "Whether the last configuration reload succeeded.",
                     names, values, self.reload_successful)
        yield _gauge("egov_agent_config_last_reload_success_timestamp_seconds",
                     "Timestamp of the last successful configuration reload.", names, values, self.reload_success_at)
        yield _gauge("egov_agent_jobs", "Checks times targets currently scheduled.", names, values, self.jobs)
        yield _gauge("egov_agent_runs_in_flight", "Runs started and not yet finished.", names, values,
                     self.in_flight)
        runs = CounterMetricFamily("egov_agent_runs", "Finished runs by kind and outcome.",
                                   labels=["kind", "outcome", *names])
        for (kind, outcome), count in sorted(self.runs.items()):
            runs.add_metric([kind, outcome, *values], count)
        yield runs
        skipped = CounterMetricFamily("egov_agent_runs_skipped", "Runs not started because the previous run of the "
                                      "same check and target was still going, or the agent was too late.",
                                      labels=["check", *names])
        for check, count in sorted(self.skipped.items()):
            skipped.add_metric([check, *values], count)
        yield skipped
        partial = CounterMetricFamily("egov_agent_collector_errors", "Parts of runs that failed while the rest "
                                      "was reported (one mount, one device).", labels=["kind", "subsystem", *names])
        for (kind, subsystem), count in sorted(self.partial_errors.items()):
            partial.add_metric([kind, subsystem, *values], count)
        yield partial
        durations = HistogramMetricFamily("egov_agent_run_duration_seconds", "Duration of runs by kind.",
                                          labels=["kind", *names])
        for kind, histogram in sorted(self.run_durations.items()):
            durations.add_metric([kind, *values], histogram.buckets(), histogram.total)
        yield durations
        lag = HistogramMetricFamily("egov_agent_event_loop_lag_seconds",
                                    "How late the event loop woke up a timer.", labels=names)
        lag.add_metric(values, self.loop_lag.buckets(), self.loop_lag.total)
        yield lag
        for name, value in self._process_stats.items():
            family: Metric
            if name.endswith("_total"):
                family = CounterMetricFamily(name.removesuffix("_total"), _PROCESS_HELP[name], labels=names)
            else:
                family = GaugeMetricFamily(name, _PROCESS_HELP[name], labels=names)
            family.add_metric(values, value)
            yield family


_PROCESS_HELP = {
    "process_cpu_seconds_total": "Total user and system CPU time spent in seconds.",
    "process_resident_memory_bytes": "Resident memory size in bytes.",
    "process_virtual_memory_bytes": "Virtual memory size in bytes.",
    "process_open_fds": "Number of open file descriptors.",
    "process_start_time_seconds": "Start time of the process since unix epoch in seconds.",
}


def _gauge(name: str, help_text: str, names: list[str], values: list[str], value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=names)
    family.add_metric(values, value)
    return family
