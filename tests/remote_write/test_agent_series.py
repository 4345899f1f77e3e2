"""The agent's own series chosen for remote-write: office info, config and queue health, never histograms."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporters.remote_write import remote_pb2
from exporters.remote_write.agent_series import agent_samples
from exporters.remote_write.encode import Encoder


def test_only_agent_gauges_counters_and_office_info_are_pushed() -> None:
    registry = CollectorRegistry()
    Gauge("egov_office_info", "Office.", ["name"], registry=registry).labels("UBND xã A").set(1)
    Gauge("egov_agent_config_last_reload_successful", "Reload.", registry=registry).set(0)
    Counter("egov_agent_remote_write_samples_dropped", "Dropped.", ["reason"], registry=registry).labels("age").inc(3)
    Histogram("egov_agent_run_duration_seconds", "Runs.", registry=registry).observe(0.1)
    Gauge("process_resident_memory_bytes_x", "Not ours.", registry=registry).set(5)
    got = {(name, labels): value for name, labels, value in agent_samples(registry)}
    assert got == {
        ("egov_office_info", (("name", "UBND xã A"),)): 1.0,
        ("egov_agent_config_last_reload_successful", ()): 0.0,
        ("egov_agent_remote_write_samples_dropped_total", (("reason", "age"),)): 3.0,
    }


def test_agent_series_carry_office_labels_and_go_stale_when_gone() -> None:
    encoder = Encoder({"org_id": "000.00.20.H49", "level": "commune"})
    first = encoder.encode_agent([("egov_agent_config_version", (), 7.0), ("egov_agent_jobs", (), 3.0)], 1000.0)
    second = encoder.encode_agent([("egov_agent_config_version", (), 8.0)], 1001.0)
    series = remote_pb2.WriteRequest.FromString(b"".join(f.payload for f in first)).timeseries
    labels = {tuple((label.name, label.value) for label in s.labels) for s in series}
    assert (("__name__", "egov_agent_config_version"), ("level", "commune"), ("org_id", "000.00.20.H49")) in labels
    later = remote_pb2.WriteRequest.FromString(b"".join(f.payload for f in second)).timeseries
    values = {next(label.value for label in s.labels if label.name == "__name__"): s.samples[0].value for s in later}
    assert values["egov_agent_config_version"] == 8.0
    assert values["egov_agent_jobs"] != values["egov_agent_jobs"]  # the stale marker is a NaN
