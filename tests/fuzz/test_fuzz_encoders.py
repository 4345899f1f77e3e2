"""Fuzzed outputs: any label values and sample values render to exposition text prometheus_client parses back
exactly, and encode to remote-write WriteRequests that protobuf and snappy decode back exactly."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from agent.errors import Outcome
from agent.runner import Job, ProbeResult
from collectors.base import CollectorSpec, MetricSpec, Sample, Settings
from exporters.exposition import Exposition
from exporters.remote_write import encode, remote_pb2

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
OFFICE = {"org_id": "000.00.20.H49", "level": "commune"}
SPEC = CollectorSpec("fuzz", Settings, None, (  # type: ignore[arg-type]
    MetricSpec("egov_fuzz_value", "gauge", "A fuzzed value.", ("part",)),
    MetricSpec("egov_fuzz_total", "counter", "A fuzzed counter.", ("part", "kind")),
))
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**63, 2**63).map(float))
SAMPLES = st.lists(st.one_of(
    st.builds(lambda p, v: Sample("egov_fuzz_value", (("part", p),), v), TEXT, VALUES),
    st.builds(lambda p, k, v: Sample("egov_fuzz_total", (("part", p), ("kind", k)), v), TEXT, TEXT, VALUES),
), max_size=12, unique_by=lambda s: (s.name, s.labels))


def result(target: str, samples: list[Sample], duration: float, at: float = 1_795_784_503.25) -> ProbeResult:
    job = Job("fuzz", target, "fuzz_module", "other", 60.0, 5.0, SPEC, Settings())
    return ProbeResult(job, True, Outcome.SUCCESS, duration, at, samples)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@FUZZ
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60), SAMPLES,
       st.floats(min_value=0, max_value=1e6))
def test_exposition_parses_back(target: str, samples: list[Sample], duration: float) -> None:
    exposition = Exposition(OFFICE)
    exposition.update(result(target, samples, duration))
    parsed = {}
    for family in text_string_to_metric_families(exposition.body().decode("utf-8")):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels["target"] == target and labels["org_id"] == OFFICE["org_id"]
            key = (sample.name, tuple(sorted((k, v) for k, v in labels.items()
                                             if k not in ("check", "module", "service", "target", "org_id",
                                                          "level"))))
            parsed[key] = sample.value
    for sample in samples:
        key = (sample.name, tuple(sorted(sample.labels)))
        assert key in parsed, key
        assert same(parsed[key], sample.value), (sample, parsed[key])
    assert same(parsed[("probe_duration_seconds", ())], duration)


@pytest.mark.slow
@FUZZ
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60), SAMPLES,
       st.floats(min_value=1.0, max_value=4e9), st.integers(1, 50))
def test_remote_write_round_trips(target: str, samples: list[Sample], at: float, max_samples: int) -> None:
    encoder = encode.Encoder(OFFICE, max_samples=max_samples)
    fragments = encoder.encode(result(target, samples, 0.5, at))
    body = encode.compress(b"".join(f.payload for f in fragments))
    request = remote_pb2.WriteRequest.FromString(encode.decompress(body))
    assert sum(f.samples for f in fragments) == len(request.timeseries) == len(samples) + 2
    got = {}
    for series in request.timeseries:
        names = [label.name for label in series.labels]
        assert names == sorted(names) and len(set(names)) == len(names)  # spec: sorted, unique, non-empty
        assert all(label.value for label in series.labels)
        (sample,) = series.samples
        assert sample.timestamp == int(at * 1000)
        labels = {label.name: label.value for label in series.labels}
        got[labels.pop("__name__"), tuple(sorted((k, v) for k, v in labels.items()
                                                 if k in ("part", "kind")))] = sample.value
    for sample in samples:
        value = got[sample.name, tuple(sorted((k, v) for k, v in sample.labels if v))]
        if math.isnan(sample.value):
            bits = struct.unpack("<Q", struct.pack("<d", value))[0]
            assert math.isnan(value) and bits != encode.STALE_NAN_BITS
        else:
            assert value == sample.value
