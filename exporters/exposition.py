"""Prometheus text exposition of the latest results, rendered once per result rather than once per scrape.

prometheus_client's generate_latest re-renders every series on every scrape (about 70 ms for 10,000 series
here, see tests/bench/bench_metrics_render.py); rendering a result's lines when it arrives and joining the
cached chunks at scrape time keeps /metrics well under 10 ms, so this small renderer is written by hand.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable

from agent.runner import ProbeResult
from agent.store import JobKey, JobStatus
from collectors.base import MetricSpec, Sample

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

RUN_METRICS = (
    MetricSpec("probe_success", "gauge", "Whether the probe was a success."),
    MetricSpec("probe_duration_seconds", "gauge", "Returns how long the probe took to complete in seconds."),
    MetricSpec("egov_probe_runs_total", "counter", "Runs of this check on this target by outcome, since the agent "
               "started; a failure between two scrapes still shows.", ("outcome",)),
    MetricSpec("egov_probe_state_changes_total", "counter", "Changes between success and failure of this check on "
               "this target since the agent started."),
    MetricSpec("egov_probe_last_change_timestamp_seconds", "gauge", "When this check on this target last changed "
               "between success and failure (or first ran)."),
)


class Exposition:
    """Rendered text of every job's latest samples, grouped by metric family."""

    def __init__(self, office_labels: dict[str, str]) -> None:
        self._office = _render_pairs(office_labels.items())
        self._families: dict[str, dict[JobKey, str]] = {}
        self._specs: dict[str, MetricSpec] = {spec.name: spec for spec in RUN_METRICS}
        self._job_families: dict[JobKey, tuple[str, ...]] = {}
        self._body: bytes | None = None
        self._gzipped: bytes | None = None

    def update(self, result: ProbeResult, status: JobStatus | None = None) -> None:
        """Render one result's samples (and the job's run counters) and replace that job's previous lines."""
        job = result.job
        base = _render_pairs(
            (("check", job.check), ("module", job.module), ("service", job.service), ("target", job.target))
        )
        if self._office:
            base = f"{base},{self._office}"
        chunks: dict[str, list[str]] = {
            "probe_success": [f"probe_success{{{base}}} {1 if result.success else 0}\n"],
            "probe_duration_seconds": [f"probe_duration_seconds{{{base}}} {format_value(result.duration)}\n"],
        }
        if status is not None:
            chunks["egov_probe_runs_total"] = [
                f'egov_probe_runs_total{{outcome="{outcome}",{base}}} {count}\n'
                for outcome, count in sorted(status.runs.items())
            ]
            chunks["egov_probe_state_changes_total"] = [f"egov_probe_state_changes_total{{{base}}} "
                                                        f"{status.state_changes}\n"]
            chunks["egov_probe_last_change_timestamp_seconds"] = [
                f"egov_probe_last_change_timestamp_seconds{{{base}}} {format_value(status.last_change_at)}\n"]
        catalog = job.catalog
        for sample in result.samples:
            family = sample.name
            if family not in catalog:  # a histogram's NAME_bucket, NAME_sum or NAME_count
                family = family.rpartition("_")[0]
            lines = chunks.get(family)
            if lines is None:
                lines = chunks[family] = []
                if family not in self._specs:
                    self._specs[family] = catalog[family]
            lines.append(_render_sample(sample, base))
        self._drop(job.key)
        for name, lines in chunks.items():
            self._families.setdefault(name, {})[job.key] = "".join(lines)
        self._job_families[job.key] = tuple(chunks)
        self._body = None

    def remove(self, key: JobKey) -> None:
        """Forget a job's lines (its check or target left the config)."""
        self._drop(key)
        self._body = None

    def clear(self) -> None:
        """Forget everything (the office labels changed)."""
        self._families.clear()
        self._job_families.clear()
        self._body = None

    def set_office(self, office_labels: dict[str, str]) -> None:
        """Use new office labels; callers re-render the latest results afterwards."""
        self._office = _render_pairs(office_labels.items())
        self.clear()

    def body(self) -> bytes:
        """The whole text of all families, rebuilt only when a result arrived since the last call."""
        if self._body is None:
            parts: list[str] = []
            for name in sorted(self._families):
                by_job = self._families[name]
                if not by_job:
                    continue
                spec = self._specs[name]
                parts.append(f"# HELP {name} {_escape_help(spec.help)}\n# TYPE {name} {spec.type}\n")
                parts.extend(by_job.values())
            self._body = "".join(parts).encode()
            self._gzipped = None
        return self._body

    def gzipped_body(self) -> bytes:
        """`body()` as one gzip member, cached with it."""
        body = self.body()
        if self._gzipped is None:
            self._gzipped = compress(body)
        return self._gzipped

    def cached_gzip(self, body: bytes) -> bytes | None:
        """The gzip of `body` if it is the current body and was compressed already."""
        return self._gzipped if body is self._body else None

    def keep_gzip(self, body: bytes, gzipped: bytes) -> None:
        """Cache a gzip made elsewhere (a worker thread), unless a newer result changed the body meanwhile."""
        if body is self._body:
            self._gzipped = gzipped

    def _drop(self, key: JobKey) -> None:
        for name in self._job_families.pop(key, ()):
            family = self._families.get(name)
            if family is not None:
                family.pop(key, None)


def compress(body: bytes) -> bytes:
    """One gzip member at level 1: a tenth of the size for a fraction of level 6's time."""
    return gzip.compress(body, compresslevel=1, mtime=0)


def format_value(value: float) -> str:
    """A float as the text format writes it: integers without a fraction, NaN and ±Inf spelled out."""
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def escape_label_value(value: str) -> str:
    """Escape backslash, double quote and newline, as the text format requires."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _render_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in pairs)


def _render_sample(sample: Sample, base: str) -> str:
    if sample.labels:
        return f"{sample.name}{{{_render_pairs(sample.labels)},{base}}} {format_value(sample.value)}\n"
    return f"{sample.name}{{{base}}} {format_value(sample.value)}\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
