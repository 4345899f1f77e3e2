"""Real Prometheus and Alertmanager (Debian packages) on 127.0.0.1 for deploy tests (TESTBED.md sections 1-2).

Each server gets a free port and its own directory, runs in the foreground and is stopped by its PID (terminate,
wait, kill after a timeout). `scaled_rules` copies production rule files with their `for:` durations shortened,
so an end-to-end test can wait seconds where production waits minutes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testlib import free_port, http_get, wait_for

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def binary(name: str) -> str:
    """The full path of a Debian-packaged binary; AssertionError if missing (tests/run installs the packages)."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} is not installed: run the suite through tests/run, which installs it")
    return path


@dataclass
class Server:
    """A server process started by a test, listening on `address`, with its output in a file."""

    name: str
    process: subprocess.Popen[bytes]
    address: str
    log_path: Path

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://{self.address}"

    def log(self) -> str:
        """Everything the server wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str, timeout: float = 5.0) -> bytes:
        """GET a path and return the body; fails the test on a non-200 status."""
        status, body, _ = http_get(f"{self.url}{path}", timeout=timeout)
        assert status == 200, f"{self.name} GET {path}: {status} {body[:500]!r}"
        return body

    def get_json(self, path: str, **params: str) -> Any:
        """GET a path with query parameters and decode the JSON body; fails unless the status is 200."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body, _ = http_get(f"{self.url}{path}{query}", timeout=10)
        assert status == 200, f"{self.name} GET {path}: {status} {body[:500]!r}"
        return json.loads(body)

    def wait_ready(self, path: str, timeout: float = 20.0) -> None:
        """Poll `path` until it answers 200; fail at once, with the log, if the process exits."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            return http_get(f"{self.url}{path}", timeout=1)[0] == 200

        try:
            wait_for(ready, timeout=timeout)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{self.name} log:\n{self.log()}") from None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID and wait; SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)


class Prometheus(Server):
    """A running Prometheus and the API calls the tests make."""

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (at `at`, Unix seconds, or now); the vector's elements. Fails on an API error."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        payload = self._post("/api/v1/query", params)
        assert payload.get("status") == "success", f"{expr}: {payload}"
        assert payload["data"]["resultType"] == "vector", f"{expr}: {payload['data']['resultType']}"
        return list(payload["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """Prometheus's own view of its alerts (pending and firing)."""
        return list(self.get_json("/api/v1/alerts")["data"]["alerts"])

    def _post(self, path: str, params: dict[str, str]) -> Any:
        data = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            return json.loads(err.read())


def start_prometheus(workdir: Path, config: dict[str, Any], extra_args: tuple[str, ...] = ()) -> Prometheus:
    """Prometheus with `config` (rule paths relative to `workdir`), its TSDB in workdir/data (backfill there
    before calling); resend delay 1 s so alerts reach Alertmanager promptly."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is YAML
    address = f"127.0.0.1:{free_port()}"
    argv = [binary("prometheus"), "--config.file=prometheus.yml", "--storage.tsdb.path=data",
            f"--web.listen-address={address}", f"--web.external-url=http://{address}/",
            "--rules.alert.resend-delay=1s", "--storage.tsdb.retention.time=30d", *extra_args]
    server = Prometheus("prometheus", *_popen(argv, workdir, address, "prometheus"))
    server.wait_ready("/-/ready")
    return server


def start_alertmanager(workdir: Path, config_text: str) -> Server:
    """Alertmanager with `config_text`, clustering off, its state in workdir/data."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text(config_text, encoding="utf-8")
    address = f"127.0.0.1:{free_port()}"
    argv = [binary("prometheus-alertmanager"), "--config.file=alertmanager.yml", "--storage.path=data",
            f"--web.listen-address={address}", "--cluster.listen-address=", f"--web.external-url=http://{address}/"]
    server = Server("alertmanager", *_popen(argv, workdir, address, "alertmanager"))
    server.wait_ready("/-/ready")
    return server


def scaled_rules(source: Path, dest: Path, minute_to: str = "s") -> Path:
    """Copy a rule file with every `for: Nm` turned into `for: N<minute_to>` (order of durations kept)."""
    text = source.read_text(encoding="utf-8")
    dest.write_text(re.sub(r"(\bfor: )(\d+)m\b", rf"\g<1>\g<2>{minute_to}", text), encoding="utf-8")
    return dest


def inventory_rules(offices: list[dict[str, str]]) -> str:
    """A rules file in the shape `egov-agent inventory generate` writes: one egov_inventory_office per office."""
    rules = [{"record": "egov_inventory_office", "expr": "vector(1)", "labels": office} for office in offices]
    return json.dumps({"groups": [{"name": "egov-inventory", "rules": rules}]}, ensure_ascii=False, indent=2)


def _popen(argv: list[str], workdir: Path, address: str, name: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir,
                                   stdin=subprocess.DEVNULL)
    return process, address, log_path
