"""Real remote-write receivers for tests: VictoriaMetrics and Prometheus on 127.0.0.1, read back raw samples."""

from __future__ import annotations

import json
import math
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from testlib import free_port, http_get, wait_for

SeriesKey = frozenset[tuple[str, str]]
Samples = dict[SeriesKey, dict[int, float]]
RawSamples = dict[SeriesKey, list[tuple[int, float]]]


@dataclass
class Receiver:
    """A receiver process started by a test."""

    kind: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def write_url(self) -> str:
        """Where remote-write goes."""
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def stop(self) -> None:
        """Terminate by PID and wait."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def samples(self, selector: str, window: str = "30m") -> Samples:
        """Every raw sample stored for `selector` (NaN stale markers left out): series -> {ts_ms: value}."""
        out: Samples = {}
        if self.kind == "victoria-metrics":
            for key, rows in self.raw_samples(selector).items():
                out[key] = dict(rows)
            return out
        query = urllib.parse.urlencode({"query": f"{selector}[{window}]"})
        status, body, _ = http_get(f"http://127.0.0.1:{self.port}/api/v1/query?{query}", timeout=30)
        assert status == 200, body
        for row in json.loads(body)["data"]["result"]:
            key = frozenset(row["metric"].items())
            for ts, value in row["values"]:
                out.setdefault(key, {})[round(float(ts) * 1000)] = float(value)
        return out

    def raw_samples(self, selector: str) -> RawSamples:
        """VictoriaMetrics only: every stored sample, duplicates included, in export order (NaNs left out)."""
        assert self.kind == "victoria-metrics"
        http_get(f"http://127.0.0.1:{self.port}/internal/force_flush")
        query = urllib.parse.urlencode({"match[]": selector})
        status, body, _ = http_get(f"http://127.0.0.1:{self.port}/api/v1/export?{query}", timeout=30)
        assert status == 200, body
        out: RawSamples = {}
        for line in body.decode().splitlines():
            row = json.loads(line)
            key = frozenset(row["metric"].items())
            for ts, value in zip(row["timestamps"], row["values"], strict=True):
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    out.setdefault(key, []).append((int(ts), float(value)))
        return out


def start_victoria_metrics(tmp: Path, dedup: bool = True) -> Receiver:
    """victoria-metrics with 100 years of retention, ready to be written to; `dedup` removes exact duplicates."""
    port = free_port()
    log_path = tmp / f"vm-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            ["victoria-metrics", f"-storageDataPath={tmp / f'vm-{port}'}", f"-httpListenAddr=127.0.0.1:{port}",
             "-retentionPeriod=100y", "-search.latencyOffset=1s", "-loggerLevel=WARN",
             *(["-dedup.minScrapeInterval=1ms"] if dedup else [])],
            stdout=log_file, stderr=subprocess.STDOUT)
    receiver = Receiver("victoria-metrics", process, port, log_path)
    wait_for(lambda: http_get(f"http://127.0.0.1:{port}/health", timeout=1)[0] == 200, timeout=30)
    return receiver


def start_prometheus(tmp: Path, out_of_order_window: str = "1h") -> Receiver:
    """prometheus as a remote-write receiver with the out-of-order window deploy/central asks for."""
    port = free_port()
    base = tmp / f"prom-{port}"
    base.mkdir(parents=True)
    (base / "prometheus.yml").write_text(
        "global: {scrape_interval: 1m}\n"
        f"storage: {{tsdb: {{out_of_order_time_window: {out_of_order_window}}}}}\n", encoding="utf-8")
    log_path = tmp / f"prometheus-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            ["prometheus", f"--config.file={base / 'prometheus.yml'}", f"--storage.tsdb.path={base / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver"],
            stdout=log_file, stderr=subprocess.STDOUT)
    receiver = Receiver("prometheus", process, port, log_path)
    wait_for(lambda: http_get(f"http://127.0.0.1:{port}/-/ready", timeout=1)[0] == 200, timeout=30)
    return receiver


