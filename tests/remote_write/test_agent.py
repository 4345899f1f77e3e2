"""Remote-write through the agent process: the queue lock, config errors, stale markers when a check is removed."""

from __future__ import annotations

import json
import subprocess
import urllib.parse

import pytest
from fakes.receivers import start_prometheus
from testlib import OFFICE_YAML, egov_agent_command, http_get, http_post, wait_for

pytestmark = pytest.mark.slow


def config(state, url: str, checks: str) -> str:
    return OFFICE_YAML + f"""\
agent: {{state_dir: {state}}}
modules:
  host_fast: {{kind: host, timeout: 900ms}}
checks:
{checks}
remote_write:
  - {{name: central, url: "{url}", queue: {{batch_send_deadline: 1s}}}}
"""


TWO_CHECKS = """\
  - {name: host, module: host_fast, service: host, targets: [localhost], interval: 1s}
  - {name: host2, module: host_fast, service: host, targets: [localhost], interval: 1s}
"""
ONE_CHECK = "  - {name: host, module: host_fast, service: host, targets: [localhost], interval: 1s}\n"


def test_second_agent_on_the_same_state_dir_exits_1(start_agent, tmp_path) -> None:
    text = config(tmp_path / "state", "http://127.0.0.1:9/api/v1/write", ONE_CHECK)
    first = start_agent(text)
    path = tmp_path / "second.yaml"
    path.write_text(text, encoding="utf-8")
    done = subprocess.run([*egov_agent_command(), "run", "--config", str(path), "--web.listen-address",
                           "127.0.0.1:0"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert f"is locked by another egov-agent (pid {first.process.pid})" in done.stderr
    assert "Traceback" not in done.stderr


def test_duplicate_destination_names_are_a_config_error(tmp_path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(OFFICE_YAML + "remote_write:\n  - {url: 'http://127.0.0.1:1/w'}\n"
                    "  - {url: 'http://127.0.0.1:1/other'}\n", encoding="utf-8")
    done = subprocess.run([*egov_agent_command(), "check-config", str(path)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 1
    assert "remote_write[1]: destination '127.0.0.1:1' is already remote_write[0]" in done.stderr


def test_removed_check_gets_stale_markers_and_the_rest_keeps_flowing(start_agent, tmp_path) -> None:
    prometheus = start_prometheus(tmp_path)
    try:
        agent = start_agent(config(tmp_path / "state", prometheus.write_url, TWO_CHECKS))
        wait_for(lambda: instant(prometheus, 'probe_success{check="host2"}') == ["1"], timeout=30)
        agent.config_path.write_text(config(tmp_path / "state", prometheus.write_url, ONE_CHECK), encoding="utf-8")
        assert http_post(f"{agent.url}/-/reload")[0] == 200
        # Without a stale marker Prometheus would show the last value for 5 minutes (its lookback).
        wait_for(lambda: instant(prometheus, 'probe_success{check="host2"}') == [], timeout=15)
        assert instant(prometheus, 'probe_success{check="host"}') == ["1"]
        # The agent's own series travel too, with the office's labels (an office that only pushes is seen).
        assert instant(prometheus, 'egov_office_info{org_id="000.00.20.H49",level="commune"}') == ["1"]
        assert instant(prometheus, 'egov_agent_config_last_reload_successful{org_id="000.00.20.H49"}') == ["1"]
        stale = instant(prometheus, 'count_over_time(probe_success{check="host2"}[10m])')
        assert stale and int(stale[0]) >= 1
        assert agent.stop() == 0
    finally:
        prometheus.stop()


def instant(prometheus, query: str) -> list[str]:
    status, body, _ = http_get(f"http://127.0.0.1:{prometheus.port}/api/v1/query?"
                               + urllib.parse.urlencode({"query": query}))
    assert status == 200, body
    return [row["value"][1] for row in json.loads(body)["data"]["result"]]
