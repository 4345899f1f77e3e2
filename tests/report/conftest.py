"""Real Prometheus and VictoriaMetrics holding the synthetic fleet's months (tests/fakes/fleet_data.py)."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.fleet_data import Fleet, build_fleet
from testlib import free_port, http_get, wait_for

MONTHS = ["2025-04", "2025-05", "2026-09", "2026-10"]


@dataclass
class StoreProcess:
    """A store started by a test: its base URL and where its log goes."""

    kind: str
    url: str
    log: Path


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    """Both hierarchy versions, two months each (April-May 2025 on qn-2012, September-October 2026 on dn-2025)."""
    return build_fleet(months=MONTHS)


@pytest.fixture(scope="session")
def fleet_dir(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inventory file of the fleet."""
    folder = tmp_path_factory.mktemp("fleet")
    (folder / "inventory.yaml").write_text(fleet.inventory_yaml(), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def prometheus(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreProcess]:
    """Prometheus 2.42 started on blocks written by `promtool tsdb create-blocks-from openmetrics`."""
    folder = tmp_path_factory.mktemp("prometheus")
    data = folder / "data"
    data.mkdir()
    source = folder / "fleet.om"
    with source.open("w", encoding="utf-8") as handle:
        handle.writelines(fleet.openmetrics())
    # The hidden --max-block-duration keeps a month in a few blocks (the 2 h default makes hundreds, slowly).
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=1488h", "-q",
                    str(source), str(data)], check=True, timeout=120, capture_output=True)
    (folder / "prometheus.yml").write_text("global: {scrape_interval: 1m}\n", encoding="utf-8")
    port = free_port()
    log = folder / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["prometheus", f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=20y"],
            stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: process.poll() is None and http_get(f"{url}/-/ready", timeout=1)[0] == 200, timeout=30)
        yield StoreProcess("prometheus", url, log)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def victoria(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreProcess]:
    """VictoriaMetrics single node loaded through /api/v1/import/prometheus."""
    folder = tmp_path_factory.mktemp("victoria")
    port = free_port()
    log = folder / "vm.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["victoria-metrics", f"-storageDataPath={folder / 'data'}", f"-httpListenAddr=127.0.0.1:{port}",
             "-retentionPeriod=100y", "-search.latencyOffset=1s"],
            stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: process.poll() is None and http_get(f"{url}/health", timeout=1)[0] == 200, timeout=30)
        batch: list[str] = []
        size = 0
        for text in fleet.vm_import():
            batch.append(text)
            size += len(text)
            if size > 4_000_000:
                _post(f"{url}/api/v1/import/prometheus", "".join(batch).encode())
                batch, size = [], 0
        _post(f"{url}/api/v1/import/prometheus", "".join(batch).encode())
        http_get(f"{url}/internal/force_flush", timeout=10)
        total = sum(len(s.points) for s in fleet.series if s.name == "up")
        query = f"{url}/api/v1/query?query=sum(count_over_time(up%5B1000d%5D))"

        def loaded() -> bool:
            status, body, _ = http_get(query, timeout=10)
            return status == 200 and f'"{total}"' in body.decode()
        wait_for(loaded, timeout=30, interval=0.5)
        yield StoreProcess("victoria", url, log)
    finally:
        _stop(process)


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 204, response.status


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
