"""A real Prometheus 2.42 scrapes the agent: the series arrive with the office labels and the target is healthy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from testlib import AgentProcess, wait_for

ORG_ID = "000.00.20.H49"
# Prometheus' own counters of samples it refused from a scrape; each must stay 0 for the agent's target.
INGEST_ERROR_COUNTERS = (
    "prometheus_target_scrapes_sample_duplicate_timestamp_total",
    "prometheus_target_scrapes_sample_out_of_order_total",
    "prometheus_target_scrapes_sample_out_of_bounds_total",
    "prometheus_target_scrapes_exceeded_sample_limit_total",
)


def _sample_value(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not found")


@pytest.mark.slow
def test_prometheus_scrapes_agent_series_with_office_labels(
    host_agent: AgentProcess, start_prometheus: Callable[..., Any]
) -> None:
    prometheus = start_prometheus([host_agent.address])

    # The first scrape comes about 5 s after /-/ready (target discovery is throttled), then every second.
    series = wait_for(lambda: prometheus.query(f'node_memory_MemTotal_bytes{{org_id="{ORG_ID}"}}'), timeout=60)
    assert len(series) == 1, series
    labels = series[0]["metric"]
    assert labels["org_id"] == ORG_ID
    assert labels["level"] == "commune"
    assert labels["check"] == "host" and labels["service"] == "host" and labels["target"] == "localhost"
    assert labels["job"] == "egov-agent" and labels["instance"] == host_agent.address
    assert float(series[0]["value"][1]) == _sample_value(host_agent.metrics(), "node_memory_MemTotal_bytes")

    success = prometheus.query('probe_success{check="host"}')
    assert [(s["metric"]["org_id"], s["metric"]["level"], s["value"][1]) for s in success] == [
        (ORG_ID, "commune", "1")
    ], success

    info = prometheus.query("egov_office_info")
    assert len(info) == 1, info
    info_labels = info[0]["metric"]
    assert info[0]["value"][1] == "1"
    assert info_labels["org_id"] == ORG_ID and info_labels["level"] == "commune"
    assert info_labels["name"] == "UBND xã Tam Xuân 1"
    assert info_labels["parent_id"] == "000.00.15.H49"
    assert info_labels["hierarchy"] == "qn-2012"


@pytest.mark.slow
def test_prometheus_target_is_up_without_errors(
    host_agent: AgentProcess, start_prometheus: Callable[..., Any]
) -> None:
    prometheus = start_prometheus([host_agent.address])

    def scraped() -> list[dict[str, Any]]:
        targets = prometheus.active_targets()
        return targets if targets and all(t["health"] != "unknown" for t in targets) else []

    targets = wait_for(scraped, timeout=60)
    assert len(targets) == 1, targets
    target = targets[0]
    assert target["scrapeUrl"] == f"http://{host_agent.address}/metrics"
    assert target["health"] == "up", target
    assert target["lastError"] == "", target

    # Several consecutive scrapes succeed while the agent re-renders between them.
    wait_for(lambda: prometheus.query('count_over_time(up{job="egov-agent"}[1m]) >= 4'), timeout=30)
    assert [s["value"][1] for s in prometheus.query('min_over_time(up{job="egov-agent"}[1m])')] == ["1"]
    target = prometheus.active_targets()[0]
    assert (target["health"], target["lastError"]) == ("up", ""), target

    # Prometheus refused no sample of any scrape (duplicate series, out of order, limits).
    own = prometheus.server.get("/metrics").decode()
    for name in INGEST_ERROR_COUNTERS:
        assert _sample_value(own, name) == 0, f"{name} > 0; prometheus log:\n{prometheus.server.log()}"
    assert "Error on ingesting" not in prometheus.server.log()
