"""Clear errors and exit codes: unreachable, failing, slow or refusing stores, bad arguments and files."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testlib import free_port


def run_report(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "kpi-report", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


class _Broken(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(503)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>maintenance</html>")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def broken_store() -> Iterator[str]:
    """An HTTP server that answers every query with a 503 HTML page (a proxy in front of a store that is down)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_unreachable_store(tmp_path: Path) -> None:
    port = free_port()
    done = run_report("--source", f"http://127.0.0.1:{port}", "--period", "2026-10", "--out", str(tmp_path))
    assert done.returncode == 1
    assert f"cannot reach the store at http://127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_store_answering_html(tmp_path: Path, broken_store: str) -> None:
    done = run_report("--source", broken_store, "--period", "2026-10", "--out", str(tmp_path))
    assert done.returncode == 1
    assert "HTTP 503, not a Prometheus API answer" in done.stderr and "Traceback" not in done.stderr


def test_store_that_never_answers(tmp_path: Path) -> None:
    with socket.socket() as listener:  # accepts connections into its backlog, never reads
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        done = run_report("--source", f"http://127.0.0.1:{port}", "--period", "2026-10", "--out", str(tmp_path),
                          "--timeout", "1s", timeout=30)
    assert done.returncode == 1
    assert "no answer within 1s" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--period", "2026-13"], "invalid period '2026-13'", id="period"),
    pytest.param(["--format", "pdf"], "unknown --format pdf", id="format"),
    pytest.param(["--tz", "Mars/Olympus"], "unknown time zone", id="time zone"),
    pytest.param(["--source", "ftp://x"], "http:// or https://", id="source scheme"),
    pytest.param(["--kpis", "/nonexistent/kpis.yaml"], "/nonexistent/kpis.yaml: cannot read KPI catalogue",
                 id="missing catalogue"),
    pytest.param(["--inventory", "/nonexistent/inv.yaml"], "/nonexistent/inv.yaml: ", id="missing inventory"),
])
def test_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    base = {"--source": "http://127.0.0.1:9", "--period": "2026-10", "--out": str(tmp_path)}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    done = run_report(*[x for pair in base.items() for x in pair])
    expected_code = 1 if args[0] == "--source" else 2
    assert done.returncode == expected_code, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_store_refuses_a_query(tmp_path: Path, prometheus: Any) -> None:
    """A user KPI with broken PromQL: Prometheus answers 400 and the report names the query."""
    extra = tmp_path / "mine.yaml"
    extra.write_text("""\
kpis:
  - id: broken
    name: {vi: Hỏng, en: Broken}
    aggregation: mean
    expr: sum(probe_success
    coverage: probe_success
    targets: {internal: {value: 1, source: test}}
""", encoding="utf-8")
    done = run_report("--source", prometheus.url, "--period", "2026-10", "--out", str(tmp_path / "out"),
                      "--kpis", str(extra), "--no-default-kpis")
    assert done.returncode == 1
    assert "HTTP 400" in done.stderr and "sum(probe_success" in done.stderr and "Traceback" not in done.stderr
