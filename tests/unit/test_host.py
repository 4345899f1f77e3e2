"""Host collector on this machine: node_exporter's names, exclusions, and a failing mount skipped and counted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from testlib import host_config, wait_for

from agent.runner import Job, run_job
from collectors import host


def host_job(**settings: object) -> Job:
    return Job("host", "localhost", "host", "host", 15.0, 5.0, host.SPEC, host.HostSettings(**settings))  # type: ignore[arg-type]


async def test_reports_node_exporter_families() -> None:
    result = await run_job(host_job())
    assert result.success, result.error
    names = {s.name for s in result.samples}
    for name in ("node_cpu_seconds_total", "node_load1", "node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes",
                 "node_memory_Cached_bytes", "node_filesystem_size_bytes", "node_network_receive_bytes_total",
                 "node_boot_time_seconds"):
        assert name in names
    cpus = {dict(s.labels)["cpu"] for s in result.samples if s.name == "node_cpu_seconds_total"}
    assert cpus == {str(i) for i in range(os.cpu_count() or 0)}
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    total = next(s.value for s in result.samples if s.name == "node_memory_MemTotal_bytes")
    assert total == int(meminfo["MemTotal"].split()[0]) * 1024
    mounts = {dict(s.labels)["mountpoint"] for s in result.samples if s.name == "node_filesystem_size_bytes"}
    assert "/" in mounts
    assert not any(m.startswith(("/proc", "/sys", "/dev")) for m in mounts)


async def test_collectors_and_exclusions_are_honoured() -> None:
    result = await run_job(host_job(collectors=["meminfo", "netdev"], netdev_device_exclude="^lo$"))
    names = {s.name for s in result.samples}
    assert names and all(n.startswith(("node_memory_", "node_network_")) for n in names)
    devices = {dict(s.labels)["device"] for s in result.samples if s.name.startswith("node_network_")}
    assert "lo" not in devices


def test_failing_mount_is_skipped_and_counted(tmp_path: Path) -> None:
    """A mount hidden under another mount is in /proc/self/mounts but statfs fails: a real kernel-made fault."""
    hidden = tmp_path / "a" / "b"
    config = tmp_path / "agent.yaml"
    config.write_text(host_config(interval="1s"), encoding="utf-8")
    script = (
        f"mkdir -p {tmp_path}/a && mount -t tmpfs none {tmp_path}/a && mkdir {hidden} && "
        f"mount -t tmpfs none {hidden} && mount -t tmpfs none {tmp_path}/a && "
        f"exec {sys.executable} -m agent probe --debug --module host localhost"
    )
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"warn: filesystem: {hidden}: No such file or directory" in done.stderr
    samples = [(s.name, dict(s.labels)) for f in text_string_to_metric_families(done.stdout) for s in f.samples]
    mountpoints = {labels["mountpoint"] for name, labels in samples if name == "node_filesystem_size_bytes"}
    assert "/" in mountpoints and str(tmp_path / "a") in mountpoints and str(hidden) not in mountpoints
    assert any(name == "node_cpu_seconds_total" for name, _ in samples)


def test_failing_mount_counted_in_self_metrics(tmp_path: Path) -> None:
    from testlib import free_port, http_get

    hidden = tmp_path / "a" / "b"
    config = tmp_path / "agent.yaml"
    config.write_text(host_config(interval="1s"), encoding="utf-8")
    address = f"127.0.0.1:{free_port()}"
    script = (
        f"mkdir -p {tmp_path}/a && mount -t tmpfs none {tmp_path}/a && mkdir {hidden} && "
        f"mount -t tmpfs none {hidden} && mount -t tmpfs none {tmp_path}/a && "
        f"exec {sys.executable} -m agent run --config {config} --web.listen-address {address}"
    )
    process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def errors() -> float:
            text = http_get(f"http://{address}/metrics", timeout=2)[1].decode()
            return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                       if s.name == "egov_agent_collector_errors_total" and s.labels["subsystem"] == "filesystem")
        assert wait_for(lambda: errors() >= 2, timeout=20)
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
