"""The agent's /metrics passes `promtool check metrics` (Prometheus 2.42), gzipped or not, with office labels.

promtool's linter flags camelCase metric names, and node_exporter's meminfo names (`node_memory_MemTotal_bytes`)
are camelCase on purpose: DESIGN.md section 5 keeps node_exporter's names so dashboards and rules carry over,
and node_exporter's own output gets the same findings. So the strict check (exit 0, empty stderr) runs on a
config whose host module leaves out meminfo, and a second test allows exactly those meminfo findings.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families
from testlib import OFFICE_YAML, AgentProcess, http_get, wait_for

ORG_ID = "000.00.20.H49"
HOST_ALL = "  host_fast: {kind: host, timeout: 900ms}\n"
HOST_NO_MEMINFO = (
    "  host_fast: {kind: host, timeout: 900ms, host: {collectors: [cpu, loadavg, filesystem, netdev, stat]}}\n"
)
HOST_CHECK = "  - {name: host, module: host_fast, service: host, targets: [localhost], interval: 1s}\n"
# The agent's own process, matched by command line: a process check that succeeds on any machine.
PROCESS_MODULE = "  agent_cmdline: {kind: process, timeout: 900ms, process: {match: cmdline}}\n"
PROCESS_CHECK = (
    "  - {name: agent-process, module: agent_cmdline, service: other, targets: ['-m agent run'], interval: 1s}\n"
)
KINDS = {"host": (HOST_ALL, HOST_CHECK), "process": (PROCESS_MODULE, PROCESS_CHECK)}
CAMEL_CASE_FINDING = re.compile(
    r"^(node_memory_[A-Za-z]+_bytes) metric names should be written in 'snake_case' not 'camelCase'$"
)


def _config(*kinds: str, host_module: str = HOST_ALL) -> str:
    modules = "".join(host_module if kind == "host" else KINDS[kind][0] for kind in kinds)
    checks = "".join(KINDS[kind][1] for kind in kinds)
    return f"{OFFICE_YAML}modules:\n{modules}checks:\n{checks}"


def _promtool(body: bytes) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", "check", "metrics"], input=body.decode(), capture_output=True, text=True, timeout=30,
        check=False,
    )


def _runs(text: str, kind: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "egov_agent_runs_total" and sample.labels.get("kind") == kind:
                return float(sample.value)
    return 0.0


def _after_runs(agent: AgentProcess, kinds: tuple[str, ...], runs: int = 3) -> str:
    """The /metrics text once the check of each kind has finished at least `runs` runs."""

    def done() -> str:
        text: str = agent.metrics()
        return text if all(_runs(text, kind) >= runs for kind in kinds) else ""

    result: str = wait_for(done, timeout=30)
    return result


def _plain_and_gzipped(agent: AgentProcess) -> tuple[bytes, bytes]:
    status, plain, headers = http_get(f"{agent.url}/metrics")
    assert status == 200 and "Content-Encoding" not in headers, headers
    status, zipped, headers = http_get(f"{agent.url}/metrics", headers={"Accept-Encoding": "gzip"})
    assert status == 200, zipped[:200]
    assert headers.get("Content-Encoding") == "gzip", headers
    return plain, gzip.decompress(zipped)


@pytest.fixture
def require_promtool() -> None:
    """Fail clearly when promtool (Debian package `prometheus`) is missing; tests/run installs it."""
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed: run the suite through tests/run (Debian package prometheus)")


@pytest.mark.slow
@pytest.mark.usefixtures("require_promtool")
@pytest.mark.parametrize("kinds", [("host",), ("host", "process")], ids="+".join)
def test_promtool_accepts_metrics_at_start_and_after_runs(
    kinds: tuple[str, ...], run_agent: Callable[..., AgentProcess]
) -> None:
    agent = run_agent(_config(*kinds, host_module=HOST_NO_MEMINFO))
    bodies = {"at start": _plain_and_gzipped(agent)}
    _after_runs(agent, kinds)
    bodies["after runs"] = _plain_and_gzipped(agent)
    assert "probe_success{" in bodies["after runs"][0].decode()
    for phase, (plain, gunzipped) in bodies.items():
        for encoding, body in (("plain", plain), ("gzip", gunzipped)):
            result = _promtool(body)
            assert (result.returncode, result.stderr) == (0, ""), (
                f"{phase}, {encoding}: promtool exit {result.returncode}\n{result.stderr}\n{result.stdout}"
            )


@pytest.mark.slow
@pytest.mark.usefixtures("require_promtool")
def test_promtool_finds_only_node_exporter_meminfo_names_with_full_host_check(
    run_agent: Callable[..., AgentProcess],
) -> None:
    agent = run_agent(_config("host"))
    text = _after_runs(agent, ("host",))
    result = _promtool(text.encode())
    findings = result.stderr.splitlines()
    unexpected = [line for line in findings if not CAMEL_CASE_FINDING.match(line)]
    assert unexpected == [], f"promtool exit {result.returncode}:\n{result.stderr}"
    flagged = {m.group(1) for line in findings if (m := CAMEL_CASE_FINDING.match(line))}
    # Buffers and Cached are one word each, so promtool does not flag them.
    assert flagged == {
        "node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes", "node_memory_MemFree_bytes",
        "node_memory_SwapTotal_bytes", "node_memory_SwapFree_bytes",
    }, result.stderr
    assert result.returncode == 3, (result.returncode, result.stderr)  # 3: lint findings, no parse error


@pytest.mark.slow
def test_gzipped_metrics_have_the_same_families_as_plain(run_agent: Callable[..., AgentProcess]) -> None:
    agent = run_agent(_config("host", "process"))
    _after_runs(agent, ("host", "process"), runs=2)
    plain, gunzipped = _plain_and_gzipped(agent)
    plain_families = {f.name: f.type for f in text_string_to_metric_families(plain.decode())}
    gzip_families = {f.name: f.type for f in text_string_to_metric_families(gunzipped.decode())}
    assert {"node_memory_MemTotal_bytes", "probe_success", "egov_agent_build_info"} <= plain_families.keys()
    assert gzip_families == plain_families


@pytest.mark.slow
def test_every_series_carries_office_labels(run_agent: Callable[..., AgentProcess]) -> None:
    agent = run_agent(_config("host", "process"))
    text = _after_runs(agent, ("host", "process"))
    families = list(text_string_to_metric_families(text))
    names = {family.name for family in families}
    assert {"probe_success", "node_cpu_seconds", "egov_process_up", "egov_office_info", "egov_agent_runs",
            "egov_agent_run_duration_seconds", "process_cpu_seconds"} <= names, names
    missing = [
        f"{sample.name}{sample.labels}"
        for family in families
        for sample in family.samples
        if sample.labels.get("org_id") != ORG_ID or sample.labels.get("level") != "commune"
    ]
    assert missing == [], "series without the office labels:\n" + "\n".join(missing)
