"""The agent as a real process: endpoints, signals, reload, start-up errors, state-change logs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from testlib import OFFICE_YAML, REPO, egov_agent_command, host_config, http_get, http_post, wait_for

pytestmark = pytest.mark.slow


def series(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def test_default_config_serves_every_endpoint(start_agent) -> None:
    agent = start_agent((REPO / "config/agent.yaml").read_text(encoding="utf-8"))
    wait_for(lambda: "node_memory_MemTotal_bytes" in agent.metrics(), timeout=20)
    text = agent.metrics()
    assert series(text, "probe_success")[0][1] == 1.0
    assert series(text, "egov_agent_config_last_reload_successful")[0][1] == 1.0
    assert http_get(f"{agent.url}/-/healthy")[0] == 200
    assert http_get(f"{agent.url}/-/ready")[0] == 200
    status, body, headers = http_get(f"{agent.url}/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "Dịch vụ" in page and "Service" in page and "localhost" in page and "Tốt / OK" in page
    assert http_get(f"{agent.url}/probe?target=http://127.0.0.1:1/")[0] == 404


def test_sigterm_and_sigint_end_within_10s_with_exit_0(start_agent) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        agent = start_agent(host_config())
        wait_for(lambda a=agent: "probe_success" in a.metrics())
        started = time.monotonic()
        assert agent.stop(sig) == 0, agent.log()
        assert time.monotonic() - started < 10
        assert "Traceback" not in agent.log()


def test_listen_address_in_use_exits_1_naming_it(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        config = tmp_path / "agent.yaml"
        config.write_text(host_config(), encoding="utf-8")
        done = subprocess.run([*egov_agent_command(), "run", "--config", str(config), "--web.listen-address", address],
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert f"cannot listen on {address}: address already in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read config: No such file or directory"),
        (OFFICE_YAML + "checks: [{name: x, module: host, service: bogus, targets: [a]}]\n",
         "line 2: checks[0].service: unknown service 'bogus'"),
    ],
    ids=["missing", "invalid"],
)
def test_bad_config_at_start_exits_1_with_path(tmp_path: Path, content: str | None, message: str) -> None:
    config = tmp_path / "agent.yaml"
    if content is not None:
        config.write_text(content, encoding="utf-8")
    done = subprocess.run([*egov_agent_command(), "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert f"{config}: {message}" in done.stderr
    assert "Traceback" not in done.stderr


def test_reload_applies_good_config_and_keeps_old_on_bad(start_agent) -> None:
    agent = start_agent(host_config())
    wait_for(lambda: "node_load1" in agent.metrics())
    process_check = "  - {name: self, module: self_cmdline, service: other, targets: ['agent run'], interval: 1s}\n"
    good = host_config(extra=process_check).replace(
        "modules:\n", "modules:\n  self_cmdline: {kind: process, timeout: 500ms, process: {match: cmdline}}\n")
    agent.config_path.write_text(good, encoding="utf-8")
    status, body = http_post(f"{agent.url}/-/reload")
    assert (status, body) == (200, b"Reloaded.\n")
    wait_for(lambda: any(v == 1 for _, v in series(agent.metrics(), "egov_process_up")))

    agent.config_path.write_text(good.replace("service: other", "service: nonsense"), encoding="utf-8")
    status, body = http_post(f"{agent.url}/-/reload")
    assert status == 500
    assert b"checks[1].service: unknown service 'nonsense'" in body
    text = agent.metrics()
    assert series(text, "egov_agent_config_last_reload_successful")[0][1] == 0
    assert series(text, "egov_process_up"), "the running config must keep its checks"
    assert "config reload failed; keeping the running config" in agent.log()

    agent.config_path.write_text(host_config(), encoding="utf-8")  # drop the process check again
    agent.process.send_signal(signal.SIGHUP)
    wait_for(lambda: series(agent.metrics(), "egov_agent_config_last_reload_successful")[0][1] == 1)
    wait_for(lambda: not series(agent.metrics(), "egov_process_up"))
    assert agent.stop() == 0


def test_one_log_line_per_state_change_not_per_run(start_agent) -> None:
    extra = "  - {name: gone, module: quick, service: dms, targets: [no-such-process-egov], interval: 300ms}\n"
    config = host_config(extra=extra).replace("modules:\n", "modules:\n  quick: {kind: process, timeout: 200ms}\n")
    agent = start_agent(config, "--log.format", "json")
    wait_for(lambda: sum(v for labels, v in series(agent.metrics(), "egov_agent_runs_total")
                         if labels["kind"] == "process") >= 6)
    assert agent.stop() == 0
    records = [json.loads(line) for line in agent.log().splitlines() if line.startswith("{")]
    assert records, agent.log()
    changes = [r for r in records if r["msg"] == "check state changed" and r.get("check") == "gone"]
    assert len(changes) == 1, changes
    assert changes[0]["level"] == "warn"
    assert changes[0]["to"] == "down" and changes[0]["outcome"] == "mismatch"


def test_probe_command_exit_codes(tmp_path: Path) -> None:
    def probe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*egov_agent_command(), "probe", *args], capture_output=True, text=True, timeout=60)

    ok = probe("--module", "host", "localhost")
    assert ok.returncode == 0, ok.stderr
    assert series(ok.stdout, "probe_success")[0][1] == 1
    assert series(ok.stdout, "node_memory_MemTotal_bytes")[0][1] > 0

    failed = probe("--module", "process", "--debug", "no-such-process-egov")
    assert failed.returncode == 1
    assert "error: 0 processes match 'no-such-process-egov'" in failed.stderr
    assert "Probe failed: outcome=mismatch" in failed.stderr
    assert "Metrics that would have been returned:" in failed.stderr
    module = "Module configuration:\nprocess:\n  kind: process\n  timeout: 10s\n  process:\n    match: name\n"
    assert module in failed.stderr

    assert probe("--module", "nope", "x").returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("office: 1\n", encoding="utf-8")
    done = probe("--config", str(bad), "--module", "host", "localhost")
    assert done.returncode == 2 and "office" in done.stderr and "Traceback" not in done.stderr


def test_python_dash_m_and_console_script_agree() -> None:
    script = Path(sys.executable).parent / "egov-agent"
    a = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    b = subprocess.run([*egov_agent_command(), "--version"], capture_output=True, text=True, timeout=30)
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout and a.stdout.startswith("egov-agent ")
