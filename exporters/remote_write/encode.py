"""Results to remote-write 1.0 bytes: WriteRequest fragments with sorted labels, stale markers, snappy blocks.

A serialized WriteRequest is a run of `timeseries` fields, so the fragments of several results concatenate into
one valid WriteRequest: the queue stores fragments and the sender joins and compresses them.
"""

from __future__ import annotations

import math
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import cramjam

from agent.runner import ProbeResult
from agent.store import JobKey
from exporters.remote_write import remote_pb2

STALE_NAN_BITS = 0x7FF0000000000002
"""Prometheus's staleness marker; no other value may use this NaN bit pattern."""
NORMAL_NAN_BITS = 0x7FF8000000000001
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
NORMAL_NAN: float = struct.unpack("<d", struct.pack("<Q", NORMAL_NAN_BITS))[0]
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
AGENT_KEY: JobKey = ("", "agent")
"""The pseudo-job of the agent's own series; no check has an empty name."""


@dataclass(frozen=True, slots=True)
class Fragment:
    """Part of a WriteRequest: `samples` samples of one job at one timestamp (ms); `group` names the job."""

    payload: bytes
    samples: int
    timestamp_ms: int
    group: int


@dataclass(slots=True)
class _JobSeries:
    base: tuple[tuple[str, str], ...]
    labels: dict[SeriesKey, bytes] = field(default_factory=dict)
    last_ms: int = 0


class Encoder:
    """Turns results into fragments, keeping each job's series to send stale markers for those that vanish."""

    def __init__(self, office_labels: dict[str, str], max_samples: int = 2000) -> None:
        self.max_samples = max_samples
        self.clamped = 0
        """Timestamps moved forward because the wall clock went back (a series must never go back in time)."""
        self._office = tuple(office_labels.items())
        self._jobs: dict[JobKey, _JobSeries] = {}

    def set_office(self, office_labels: dict[str, str]) -> None:
        """Use new office labels for every series from now on."""
        self._office = tuple(office_labels.items())
        self._jobs.clear()

    def encode(self, result: ProbeResult) -> list[Fragment]:
        """The result's samples plus probe_success and probe_duration_seconds, and stale markers for the
        series the job's previous result had and this one has not."""
        job = result.job
        base = (("check", job.check), ("module", job.module), ("service", job.service), ("target", job.target))
        samples: Iterable[tuple[str, tuple[tuple[str, str], ...], float]] = (
            ("probe_success", (), 1.0 if result.success else 0.0),
            ("probe_duration_seconds", (), result.duration),
            *result.samples,
        )
        return self._encode(job.key, base, samples, result.finished_at)

    def encode_agent(self, samples: Iterable[tuple[str, tuple[tuple[str, str], ...], float]],
                     at: float) -> list[Fragment]:
        """The agent's own series (office info, config, queue health) at `at`, with stale markers as for a job."""
        return self._encode(AGENT_KEY, (), samples, at)

    def _encode(self, key: JobKey, base: tuple[tuple[str, str], ...],
                samples: Iterable[tuple[str, tuple[tuple[str, str], ...], float]], at: float) -> list[Fragment]:
        state = self._jobs.get(key)
        if state is None:
            state = self._jobs[key] = _JobSeries(base)
        ms = self._timestamp(state, at)
        previous = state.labels
        current: dict[SeriesKey, bytes] = {}
        values: list[tuple[bytes, float]] = []
        for name, labels, value in samples:
            series = (name, labels)
            encoded = previous.get(series) or current.get(series)
            if encoded is None:
                encoded = self._labels(name, labels, state.base)
            current[series] = encoded
            values.append((encoded, NORMAL_NAN if math.isnan(value) else value))
        for series, encoded in previous.items():
            if series not in current:
                values.append((encoded, STALE_NAN))
        state.labels = current
        return self._fragments(values, ms, _group(key))

    def remove(self, key: JobKey) -> list[Fragment]:
        """Stale markers for every series of a job that left the config."""
        state = self._jobs.pop(key, None)
        if state is None or not state.labels:
            return []
        ms = self._timestamp(state, time.time())
        return self._fragments([(encoded, STALE_NAN) for encoded in state.labels.values()], ms, _group(key))

    def _timestamp(self, state: _JobSeries, at: float) -> int:
        ms = int(at * 1000)
        if ms <= state.last_ms:
            ms = state.last_ms + 1
            self.clamped += 1
        state.last_ms = ms
        return ms

    def _labels(self, name: str, labels: tuple[tuple[str, str], ...], base: tuple[tuple[str, str], ...]) -> bytes:
        pairs = {"__name__": name, **dict(labels), **dict(base), **dict(self._office)}
        series = remote_pb2.TimeSeries(
            labels=[remote_pb2.Label(name=n, value=v) for n, v in sorted(pairs.items()) if v]
        )
        encoded: bytes = series.SerializeToString()
        return encoded

    def _fragments(self, values: list[tuple[bytes, float]], ms: int, group: int) -> list[Fragment]:
        out = []
        for start in range(0, len(values), self.max_samples):
            request = remote_pb2.WriteRequest()
            add = request.timeseries.add
            chunk = values[start : start + self.max_samples]
            for encoded, value in chunk:
                series = add()
                series.MergeFromString(encoded)
                series.samples.add(value=value, timestamp=ms)
            out.append(Fragment(request.SerializeToString(), len(chunk), ms, group))
        return out


def compress(payload: bytes) -> bytes:
    """Snappy block format (never the framed format), as remote-write requires."""
    return bytes(cramjam.snappy.compress_raw(payload))


def decompress(body: bytes) -> bytes:
    """The inverse of compress()."""
    return bytes(cramjam.snappy.decompress_raw(body))


def split(payload: bytes) -> list[bytes]:
    """A WriteRequest cut into two halves by series, or [payload] when it holds a single series."""
    request = remote_pb2.WriteRequest.FromString(payload)
    count = len(request.timeseries)
    if count < 2:
        return [payload]
    halves = []
    for part in (request.timeseries[: count // 2], request.timeseries[count // 2 :]):
        halves.append(remote_pb2.WriteRequest(timeseries=part).SerializeToString())
    return halves


def _group(key: JobKey) -> int:
    return zlib.crc32("\x00".join(key).encode())
