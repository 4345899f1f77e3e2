"""The http kind in the running agent and the probe CLI: metrics on /metrics, secrets never shown anywhere."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes.http import Servers, Site
from testlib import OFFICE_YAML, AgentProcess, egov_agent_command, http_get, wait_for

pytestmark = pytest.mark.slow

SECRET = "bí-mật-không-được-lộ"


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    servers = Servers()
    yield servers.site()
    servers.close()


def config(site: Site, secret_file: Path) -> str:
    return OFFICE_YAML + f"""\
modules:
  dms:
    kind: http
    timeout: 900ms
    http:
      preferred_ip_protocol: ip4
      basic_auth: {{username: canbo, password: {{file: {secret_file}}}}}
      fail_if_body_not_matches_regexp: ['Xin chào']
checks:
  - {{name: portal, module: dms, service: portal, interval: 1s,
      targets: ['{site.url}/', '{site.url}/status/404', '{site.url}/slow']}}
"""


def test_agent_exports_http_results_without_secrets(
    site: Site, tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    secret_file = tmp_path / "dms.pass"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    agent = start_agent(config(site, secret_file))

    def all_ran() -> str:
        text = agent.metrics()
        return text if text.count("probe_http_status_code{") == 3 and "/slow" in text else ""

    metrics = str(wait_for(all_ran, timeout=20))
    assert f'probe_http_status_code{{check="portal",module="dms",service="portal",target="{site.url}/"' in metrics
    for line in metrics.splitlines():
        if line.startswith("probe_success{") and line.split('target="')[1].startswith(f'{site.url}/"'):
            assert line.endswith(" 1")
    status, page, _ = http_get(agent.url + "/")
    assert status == 200
    assert b"status code 404, want 2xx" in page
    assert b"timed out" in page
    seen = [r for r in site.seen if r["path"] == "/"]
    assert seen and seen[-1]["headers"]["Authorization"].startswith("Basic ")
    agent.stop()
    for text in (metrics, page.decode(), agent.log()):
        assert SECRET not in text


def test_probe_cli_debug_redacts_the_secret(site: Site, tmp_path: Path) -> None:
    secret_file = tmp_path / "dms.pass"
    secret_file.write_text(SECRET, encoding="utf-8")
    config_path = tmp_path / "agent.yaml"
    config_path.write_text(config(site, secret_file), encoding="utf-8")
    done = subprocess.run(
        [*egov_agent_command(), "probe", "--config", str(config_path), "--module", "dms", "--debug",
         f"{site.url}/status/404"],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 1
    assert "probe_http_status_code" in done.stdout and 'probe_http_status_code{' in done.stdout
    assert "status code 404, want 2xx" in done.stderr
    assert f"source: file:{secret_file}" in done.stderr
    assert SECRET not in done.stdout + done.stderr
