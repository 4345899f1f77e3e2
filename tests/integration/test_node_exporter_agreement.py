"""The host check and Debian's node_exporter 1.5, reading the same machine, report the same numbers.

Only values that cannot change between the two scrapes are compared exactly (totals, sizes, label sets).
Debian's node_exporter excludes `lo` from netdev and has its own mount-point excludes, so the network devices
are compared without `lo` and the filesystems only at `/`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from testlib import AgentProcess, wait_for

# Labels the agent adds to every host series; node_exporter has none of them.
AGENT_LABELS = {"check", "module", "service", "target", "org_id", "level"}


def _samples(text: str) -> dict[str, list[Sample]]:
    by_name: dict[str, list[Sample]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            by_name[sample.name].append(sample)
    return by_name


def _types(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def _one(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    matching = [s for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matching) == 1, f"want one {name}{labels}, got {matching}"
    return float(matching[0].value)


@pytest.fixture
def both(host_agent: AgentProcess, node_exporter: Any) -> tuple[str, str]:
    """(agent text, node_exporter text), scraped one right after the other once the host check has run."""
    wait_for(lambda: "\nnode_memory_MemTotal_bytes{" in host_agent.metrics(), timeout=20)
    agent_text = host_agent.metrics()
    node_text = node_exporter.get("/metrics").decode()
    return agent_text, node_text


@pytest.mark.slow
def test_memory_total_is_equal(both: tuple[str, str]) -> None:
    agent, node = map(_samples, both)
    assert _one(agent, "node_memory_MemTotal_bytes") == _one(node, "node_memory_MemTotal_bytes")


@pytest.mark.slow
def test_cpu_label_values_are_equal(both: tuple[str, str]) -> None:
    agent, node = map(_samples, both)
    agent_cpus = {s.labels["cpu"] for s in agent["node_cpu_seconds_total"]}
    node_cpus = {s.labels["cpu"] for s in node["node_cpu_seconds_total"]}
    assert agent_cpus, "the agent reported no node_cpu_seconds_total"
    assert agent_cpus == node_cpus


@pytest.mark.slow
def test_root_filesystem_size_is_equal(both: tuple[str, str]) -> None:
    agent, node = map(_samples, both)
    agent_root = [s for s in agent["node_filesystem_size_bytes"] if s.labels["mountpoint"] == "/"]
    node_root = [s for s in node["node_filesystem_size_bytes"] if s.labels["mountpoint"] == "/"]
    assert len(agent_root) == 1 and len(node_root) == 1, (agent_root, node_root)
    assert agent_root[0].value == node_root[0].value
    assert agent_root[0].labels["device"] == node_root[0].labels["device"]
    assert agent_root[0].labels["fstype"] == node_root[0].labels["fstype"]


@pytest.mark.slow
def test_network_devices_are_equal_except_loopback(both: tuple[str, str]) -> None:
    agent, node = map(_samples, both)
    agent_devices = {s.labels["device"] for s in agent["node_network_receive_bytes_total"]} - {"lo"}
    node_devices = {s.labels["device"] for s in node["node_network_receive_bytes_total"]} - {"lo"}
    assert agent_devices == node_devices


@pytest.mark.slow
def test_boot_time_agrees_within_a_second(both: tuple[str, str]) -> None:
    agent, node = map(_samples, both)
    assert abs(_one(agent, "node_boot_time_seconds") - _one(node, "node_boot_time_seconds")) <= 1.0


@pytest.mark.slow
def test_every_node_family_of_the_agent_exists_in_node_exporter_alike(both: tuple[str, str]) -> None:
    """Same name, same type and the same label names (besides the agent's own), so dashboards carry over."""
    agent_text, node_text = both
    agent_types, node_types = _types(agent_text), _types(node_text)
    agent, node = _samples(agent_text), _samples(node_text)
    node_families = sorted(name for name in agent_types if name.startswith("node_"))
    assert node_families, "the agent reported no node_* family"
    for family in node_families:
        assert family in node_types, f"{family}: node_exporter has no such family"
        assert agent_types[family] == node_types[family], f"{family}: type {agent_types[family]} vs node_exporter"
    for name, samples in agent.items():
        if not name.startswith("node_"):
            continue
        agent_labels = {frozenset(s.labels) - AGENT_LABELS for s in samples}
        node_labels = {frozenset(s.labels) for s in node[name]}
        assert agent_labels == node_labels, f"{name}: label names {agent_labels} vs node_exporter {node_labels}"
