"""Integration fixtures: the agent, Prometheus and node_exporter as real processes on 127.0.0.1.

Every server gets a free port and its own temporary directory, and is stopped by its PID (terminate, then wait)
at teardown. Helpers come from tests/testlib.py (tests/ is on pythonpath; conftest modules are not importable
under `--import-mode=importlib`).
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes.promstack import Server as ServerProcess
from fakes.promstack import binary as require_binary
from testlib import AgentProcess, free_port, host_config


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: Popen a server command in its own directory under tmp_path; terminate and wait at teardown."""
    started: list[ServerProcess] = []

    def start(name: str, argv: list[str], address: str, workdir: Path) -> ServerProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / f"{name}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir,
                                       stdin=subprocess.DEVNULL)
        server = ServerProcess(name, process, address, log_path)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@dataclass
class Prometheus:
    """A running Prometheus and the few API calls the tests make."""

    server: ServerProcess

    @property
    def url(self) -> str:
        """Base URL of Prometheus."""
        return self.server.url

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path> and return `data`; fails the test unless the status is success."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        payload = json.loads(self.server.get(f"/api/v1/{path}{query}"))
        assert payload.get("status") == "success", payload
        return payload["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the vector's elements ({"metric": labels, "value": [ts, "text"]})."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def active_targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health and last error."""
        return list(self.api("targets", state="active")["activeTargets"])


@pytest.fixture
def start_prometheus(start_server: Callable[..., ServerProcess], tmp_path: Path) -> Callable[..., Prometheus]:
    """Factory: Prometheus scraping the given `host:port` targets every second, with a temporary TSDB."""
    binary = require_binary("prometheus")
    count = 0

    def start(targets: list[str], job: str = "egov-agent") -> Prometheus:
        nonlocal count
        workdir = tmp_path / f"prometheus-{count}"
        count += 1
        workdir.mkdir()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is YAML
        address = f"127.0.0.1:{free_port()}"
        server = start_server(
            "prometheus",
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address={address}", "--log.level=info"],
            address,
            workdir,
        )
        server.wait_ready("/-/ready")
        return Prometheus(server)

    return start


@pytest.fixture
def node_exporter(start_server: Callable[..., ServerProcess], tmp_path: Path) -> ServerProcess:
    """Debian's prometheus-node-exporter 1.5 with its default collectors, minus systemd (no systemd here)."""
    binary = require_binary("prometheus-node-exporter")
    address = f"127.0.0.1:{free_port()}"
    server = start_server(
        "node_exporter",
        [binary, f"--web.listen-address={address}", "--no-collector.systemd"],
        address,
        tmp_path / "node_exporter",
    )
    server.wait_ready("/metrics")
    return server


@pytest.fixture
def run_agent(start_agent: Callable[..., AgentProcess]) -> Iterator[Callable[..., AgentProcess]]:
    """tests/conftest.py's `start_agent`, plus a graceful stop (SIGTERM by PID, then wait) at teardown.

    `start_agent`'s own teardown still kills whatever did not exit in time.
    """
    started: list[AgentProcess] = []

    def start(config_text: str, *extra_args: str) -> AgentProcess:
        agent = start_agent(config_text, *extra_args)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        with suppress(subprocess.TimeoutExpired):
            agent.stop(signal.SIGTERM, timeout=15)


@pytest.fixture
def host_agent(run_agent: Callable[..., AgentProcess]) -> AgentProcess:
    """A running agent with the commune office and a 1 s host check."""
    return run_agent(host_config("1s"))
