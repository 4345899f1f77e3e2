"""Shared helpers of the benchmark scripts: ports, processes, /proc readings, HTTP timing, tables, JSON results.

Not a benchmark itself (no `bench_` prefix). Every script imports it as `_common` (the script's own folder is
first on sys.path when run as `python tests/bench/NAME.py`).
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent.parent
RESULTS_DIR = BENCH_DIR / "results"
NODE_EXPORTER = "prometheus-node-exporter"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------------- ports, processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """Processes started by a benchmark; `stop_all` ends each one by its own PID (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], log_path: Path, cwd: Path = REPO,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `argv` with stdout and stderr going to `log_path`."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                list(argv), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
        """SIGTERM the process by PID, wait, SIGKILL it if it does not end; returns its exit code."""
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
        return process.returncode

    def stop_all(self) -> None:
        """Stop every process started here, newest first."""
        for process in reversed(self.started):
            self.stop(process)


def node_exporter_argv(port: int) -> list[str]:
    """node_exporter with its default collectors, minus systemd (TESTBED.md section 8), on loopback."""
    return [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", "--no-collector.systemd"]


def agent_argv(config: Path, port: int) -> list[str]:
    """The agent as the brief runs it: `python -m agent run --config FILE --web.listen-address ...`."""
    return [sys.executable, "-m", "agent", "run", "--config", str(config),
            "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"]


def wait_http(url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 30.0,
              check: Callable[[bytes], bool] | None = None) -> None:
    """Poll `url` until it answers 200 (and `check(body)` holds); raise if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before {url} answered")
        try:
            status, body = http_get_once(url, timeout=2.0)
        except OSError as err:
            last = repr(err)
        else:
            if status == 200 and (check is None or check(body)):
                return
            last = f"HTTP {status}"
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {timeout}s ({last})")


# ---------------------------------------------------------------------------------------------- /proc readings


def rss_bytes(pid: int | str = "self") -> int:
    """VmRSS of a process, from /proc/PID/status."""
    return _status_field(pid, "VmRSS")


def rss_anon_bytes(pid: int | str = "self") -> int:
    """RssAnon: the private (heap, stacks) part of VmRSS; the rest is mapped files and shared memory."""
    return _status_field(pid, "RssAnon")


def hwm_bytes(pid: int | str = "self") -> int:
    """VmHWM (peak RSS) of a process."""
    return _status_field(pid, "VmHWM")


def _status_field(pid: int | str, field: str) -> int:
    with Path(f"/proc/{pid}/status").open() as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds_fine(pid: int) -> float:
    """Seconds on CPU of all threads of a process, from /proc/PID/task/*/schedstat (nanosecond resolution)."""
    total = 0
    for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(path.read_text().split()[0])
        except (OSError, IndexError, ValueError):  # a thread that just ended
            continue
    return total / 1e9


def blackbox_probe_cost(blackbox: Any, module: str, target: str, probes: int, warmup: int) -> dict[str, Any]:
    """Probe time (blackbox's own probe_duration_seconds) and blackbox_exporter's CPU per probe, over /probe."""
    from fakes.blackbox import parse_samples

    assert blackbox.process is not None
    conn = http.client.HTTPConnection("127.0.0.1", blackbox.port, timeout=30)
    path = "/probe?" + urllib.parse.urlencode({"module": module, "target": target})

    def once() -> float:
        conn.request("GET", path)
        samples = parse_samples(conn.getresponse().read().decode().splitlines())
        if samples["probe_success"] != 1:
            raise RuntimeError(f"blackbox {module}: {blackbox.debug(module, target)}")
        return float(samples["probe_duration_seconds"])

    for _ in range(warmup):
        once()
    cpu = cpu_seconds_fine(blackbox.process.pid)
    durations = [once() for _ in range(probes)]
    cpu_ms = (cpu_seconds_fine(blackbox.process.pid) - cpu) / probes * 1000
    conn.close()
    return {"time": summary_ms(durations), "cpu_ms": cpu_ms}


def threads(pid: int | str = "self") -> int:
    """Number of threads of a process."""
    with Path(f"/proc/{pid}/status").open() as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise RuntimeError(f"no Threads in /proc/{pid}/status")


# ---------------------------------------------------------------------------------------------- HTTP timing


def http_get_once(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One GET on a fresh connection; returns (status, body)."""
    host, port, path = _split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Scraper:
    """GETs one URL over a kept-alive connection, as Prometheus does, and times each request to the last byte."""

    def __init__(self, url: str, gzip: bool = False, timeout: float = 10.0) -> None:
        self.host, self.port, self.path = _split_url(url)
        self.headers = {"Accept-Encoding": "gzip" if gzip else "identity",
                        "Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1"}
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self) -> tuple[float, int]:
        """Seconds from sending the request to reading the whole body, and the body's size in bytes."""
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._conn.connect()
        started = time.perf_counter()
        self._conn.request("GET", self.path, headers=self.headers)
        response = self._conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"GET {self.path} on port {self.port}: HTTP {response.status}")
        if response.will_close:
            self.close()
        return elapsed, len(body)

    def close(self) -> None:
        """Close the kept-alive connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _split_url(url: str) -> tuple[str, int, str]:
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    if host != "127.0.0.1":
        raise ValueError(f"benchmarks only talk to 127.0.0.1, not {host!r}")
    return host, int(port), "/" + path


# ---------------------------------------------------------------------------------------------- statistics, output


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean of durations given in seconds, in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else float("nan"),
        "mean_ms": sum(ms) / len(ms) if ms else float("nan"),
    }


def ratio(value: float, peer: float) -> float | None:
    """value / peer, or None when the peer is zero."""
    return value / peer if peer else None


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: floats with `digits` decimals, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ratio(value: float | None) -> str:
    """A ratio with three significant digits and an x, e.g. '0.0412x', '2.62x', '256x'."""
    return "-" if value is None else f"{value:.3g}x"


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 2) -> None:
    """A plain text table with right-aligned numbers; floats get `digits` decimals (pre-format other cells)."""
    cells = [[fmt(c, digits) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    node_version = ""
    try:
        out = subprocess.run([NODE_EXPORTER, "--version"], capture_output=True, text=True, timeout=10, check=False)
        node_version = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""
    except OSError:
        node_version = "not installed"
    commit = ""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
        commit = out.stdout.strip()
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "node_exporter": node_version,
        "git_commit": commit,
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write tests/bench/results/NAME.json and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
               "environment": environment(), **data}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"\nresult written to {path.relative_to(REPO)}")
    return path
