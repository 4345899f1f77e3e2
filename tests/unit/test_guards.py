"""Project rules that code review would otherwise have to remember."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from collectors import COLLECTORS
from exporters.exposition import RUN_METRICS

REPO = Path(__file__).resolve().parents[2]
from collectors.base import RESERVED_LABELS  # noqa: E402


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


SOURCES = sorted(p for package in ("agent", "collectors", "exporters") for p in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_only_the_scheduler_imports_apscheduler(path: Path) -> None:
    uses = any(name.split(".")[0] == "apscheduler" for name in imports_of(path))
    assert uses == (path == REPO / "agent/scheduler.py")


@pytest.mark.parametrize("path", [p for p in SOURCES if p.parts[-2] == "collectors"], ids=lambda p: p.name)
def test_collectors_never_import_prometheus_client(path: Path) -> None:
    assert not any(name.split(".")[0] == "prometheus_client" for name in imports_of(path))


def test_metric_catalogue_is_consistent() -> None:
    seen = {spec.name: spec for spec in RUN_METRICS}
    for kind, collector in COLLECTORS.items():
        assert collector.kind == kind
        for spec in collector.metrics:
            assert not RESERVED_LABELS & set(spec.labels), f"{spec.name} uses a label the agent adds itself"
            assert spec.help and re.fullmatch(r"[a-z_][a-zA-Z0-9_]*", spec.name), spec.name
            if kind != "snmp":  # SNMP keeps the MIB's names and snmp_exporter's types: ifHCInOctets is a counter
                assert spec.name.endswith("_total") == (spec.type == "counter"), spec.name
            elif spec.name.endswith("_total"):
                assert spec.type == "counter", spec.name
            other = seen.setdefault(spec.name, spec)
            assert (other.type, other.labels) == (spec.type, spec.labels), f"{spec.name} declared twice differently"
