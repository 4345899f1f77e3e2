"""Fixtures shared by every test; helpers live in tests/testlib.py."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from testlib import AgentProcess, egov_agent_command, free_port, http_get, wait_for


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Factory: start `egov-agent run` with a config text, wait until /-/ready, stop it at teardown."""
    started: list[AgentProcess] = []

    def start(config_text: str, *extra_args: str, wait_ready: bool = True) -> AgentProcess:
        port = free_port()
        address = f"127.0.0.1:{port}"
        config_path = tmp_path / f"agent-{len(started)}.yaml"
        config_path.write_text(config_text, encoding="utf-8")
        log_path = tmp_path / f"agent-{len(started)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [*egov_agent_command(), "run", "--config", str(config_path), "--web.listen-address", address,
                 *extra_args],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        agent = AgentProcess(process, address, log_path, config_path)
        started.append(agent)
        if wait_ready:
            def ready() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"agent exited with {process.returncode}:\n{agent.log()}")
                return http_get(f"{agent.url}/-/ready", timeout=1)[0] == 200
            wait_for(ready, timeout=20)
        return agent

    yield start
    for agent in started:
        if agent.process.poll() is None:
            agent.process.kill()
            agent.process.wait(timeout=10)
