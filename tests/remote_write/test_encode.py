"""The encoder against the official protobuf runtime: labels, timestamps, stale markers, NaN, snappy block format."""

from __future__ import annotations

import math
import struct

import cramjam
import pytest

from agent.errors import Outcome
from agent.runner import Job, ProbeResult
from collectors.base import CollectorSpec, MetricSpec, Sample, Settings
from exporters.remote_write import encode, remote_pb2
from exporters.remote_write.encode import STALE_NAN_BITS, Encoder

OFFICE = {"org_id": "000.00.20.H49", "level": "commune"}
SPEC = CollectorSpec("test", Settings, None, (MetricSpec("egov_test_value", "gauge", "v", ("part",)),))  # type: ignore[arg-type]


def job(check: str = "portal", target: str = "https://example.gov.vn/") -> Job:
    return Job(check, target, "http_2xx", "portal", 10.0, 5.0, SPEC, Settings())


def result(samples: list[Sample], at: float = 1_795_784_503.25, success: bool = True, j: Job | None = None,
           ) -> ProbeResult:
    return ProbeResult(j or job(), success, Outcome.SUCCESS, 0.125, at, samples)


def decode(fragments: list[encode.Fragment]) -> list[tuple[dict[str, str], list[str], float, int]]:
    request = remote_pb2.WriteRequest.FromString(b"".join(f.payload for f in fragments))
    out = []
    for series in request.timeseries:
        assert len(series.samples) == 1
        names = [label.name for label in series.labels]
        sample = series.samples[0]
        out.append(({lb.name: lb.value for lb in series.labels}, names, sample.value, sample.timestamp))
    return out


def bits(value: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", value))[0])


def test_labels_sorted_unique_with_identity_and_run_metrics() -> None:
    encoder = Encoder(OFFICE)
    fragments = encoder.encode(result([Sample("egov_test_value", (("part", "b"),), 2.5)]))
    rows = decode(fragments)
    assert [r[0]["__name__"] for r in rows] == ["probe_success", "probe_duration_seconds", "egov_test_value"]
    for labels, names, _, timestamp in rows:
        assert names == sorted(names) and len(set(names)) == len(names)
        assert all(labels.values()) and timestamp == 1_795_784_503_250
        assert {k: labels[k] for k in ("check", "module", "service", "target", "org_id", "level")} == {
            "check": "portal", "module": "http_2xx", "service": "portal", "target": "https://example.gov.vn/",
            **OFFICE}
    assert rows[2][0]["part"] == "b" and rows[2][2] == 2.5
    assert rows[0][2] == 1.0 and rows[1][2] == 0.125
    assert fragments[0].samples == 3 and fragments[0].timestamp_ms == 1_795_784_503_250


def test_empty_label_values_are_left_out() -> None:
    rows = decode(Encoder(OFFICE).encode(result([Sample("egov_test_value", (("part", ""),), 1)])))
    assert "part" not in rows[2][0]


def test_vanished_series_and_removed_job_get_exactly_one_stale_marker() -> None:
    encoder = Encoder(OFFICE)
    encoder.encode(result([Sample("egov_test_value", (("part", "a"),), 1),
                           Sample("egov_test_value", (("part", "b"),), 1)]))
    rows = decode(encoder.encode(result([Sample("egov_test_value", (("part", "a"),), 1)], at=1_795_784_513.0)))
    stale = [r for r in rows if bits(r[2]) == STALE_NAN_BITS]
    assert [r[0].get("part") for r in stale] == ["b"]
    assert stale[0][3] == 1_795_784_513_000
    removed = decode(encoder.remove(job().key))
    assert sorted(r[0]["__name__"] + r[0].get("part", "") for r in removed) == [
        "egov_test_valuea", "probe_duration_seconds", "probe_success"]
    assert all(bits(r[2]) == STALE_NAN_BITS for r in removed)
    assert encoder.remove(job().key) == []


@pytest.mark.parametrize("value", [math.nan, struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]])
def test_a_nan_value_is_never_the_stale_marker(value: float) -> None:
    rows = decode(Encoder(OFFICE).encode(result([Sample("egov_test_value", (("part", "a"),), value)])))
    assert math.isnan(rows[2][2]) and bits(rows[2][2]) != STALE_NAN_BITS


def test_infinities_pass_unchanged() -> None:
    rows = decode(Encoder(OFFICE).encode(result([Sample("egov_test_value", (("part", "a"),), -math.inf)])))
    assert rows[2][2] == -math.inf


def test_timestamps_never_go_back_within_a_job() -> None:
    encoder = Encoder(OFFICE)
    first = encoder.encode(result([], at=2000.0))[0].timestamp_ms
    second = encoder.encode(result([], at=1000.0))[0].timestamp_ms
    assert second == first + 1 and encoder.clamped == 1


def test_large_results_are_cut_into_fragments_of_max_samples() -> None:
    samples = [Sample("egov_test_value", (("part", str(i)),), i) for i in range(45)]
    fragments = Encoder(OFFICE, max_samples=20).encode(result(samples))
    assert [f.samples for f in fragments] == [20, 20, 7]
    assert len(decode(fragments)) == 47


def test_fragments_of_several_results_join_into_one_write_request() -> None:
    encoder = Encoder(OFFICE)
    a = encoder.encode(result([], j=job("a")))
    b = encoder.encode(result([], j=job("b")))
    assert [r[0]["check"] for r in decode(a + b)] == ["a", "a", "b", "b"]
    assert a[0].group != b[0].group


def test_snappy_block_format_not_framed() -> None:
    payload = b"".join(f.payload for f in Encoder(OFFICE).encode(result([])))
    body = encode.compress(payload)
    assert not body.startswith(b"\xff\x06\x00\x00sNaPpY")
    assert bytes(cramjam.snappy.decompress_raw(body)) == payload
    assert encode.decompress(body) == payload


def test_split_halves_by_series() -> None:
    fragments = Encoder(OFFICE).encode(result([Sample("egov_test_value", (("part", "a"),), 1)]))
    payload = b"".join(f.payload for f in fragments)
    halves = encode.split(payload)
    assert len(halves) == 2
    assert decode([encode.Fragment(h, 0, 0, 0) for h in halves]) == decode([encode.Fragment(payload, 0, 0, 0)])
    single = remote_pb2.WriteRequest(timeseries=[remote_pb2.WriteRequest.FromString(payload).timeseries[0]])
    assert encode.split(single.SerializeToString()) == [single.SerializeToString()]
