"""Shared test helpers (importable as `testlib`): free ports, bounded polling, HTTP, the agent as a process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.1) -> object:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as err:  # noqa: BLE001 - keep polling while the server comes up
            last_error = err
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last_error!r})")


def http_get(
    url: str, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """GET a URL; returns (status, body, headers) and never raises for HTTP error statuses."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def http_post(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """POST an empty body; returns (status, body)."""
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def egov_agent_command() -> list[str]:
    """How to start the installed agent: `python -m agent` with the test interpreter."""
    return [sys.executable, "-m", "agent"]


@dataclass
class AgentProcess:
    """An agent started by a test, on its own port, with its output in a file."""

    process: subprocess.Popen[bytes]
    address: str
    log_path: Path
    config_path: Path

    @property
    def url(self) -> str:
        """Base URL of the agent's web endpoints."""
        return f"http://{self.address}"

    def log(self) -> str:
        """Everything the agent wrote to stderr and stdout so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def metrics(self) -> str:
        """The current /metrics text."""
        status, body, _ = http_get(f"{self.url}/metrics")
        assert status == 200, body
        return body.decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


OFFICE_YAML = """\
office: {org_id: 000.00.20.H49, name: "UBND xã Tam Xuân 1", level: commune, parent_id: 000.00.15.H49}
"""


def host_config(interval: str = "1s", extra: str = "") -> str:
    """A config with the commune office and one host check (module `host_fast`, timeout 900ms) at `interval`."""
    return OFFICE_YAML + f"""\
modules:
  host_fast: {{kind: host, timeout: 900ms}}
checks:
  - {{name: host, module: host_fast, service: host, targets: [localhost], interval: {interval}}}
{extra}"""


# A name that getaddrinfo refuses before sending any query (a DNS label longer than 63 characters): tests must
# never ask the machine's resolver, which sits outside loopback.
UNRESOLVABLE_HOST = "x" * 64 + ".invalid"
