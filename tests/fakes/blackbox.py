"""Debian's blackbox_exporter on loopback as the reference for comparison tests, and Prometheus text parsing."""

from __future__ import annotations

import re
import subprocess
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from testlib import free_port, http_get, wait_for

BINARY = "prometheus-blackbox-exporter"
_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$")


class Blackbox:
    """blackbox_exporter with the given modules on 127.0.0.1:`port`, stopped by its PID."""

    def __init__(self, directory: Path, modules: dict[str, Any]) -> None:
        self.config = directory / "blackbox.yml"
        self.config.write_text(yaml.safe_dump({"modules": modules}), encoding="utf-8")
        self.port = free_port()
        self.log = directory / "blackbox.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Blackbox:
        """Check the config, start the exporter and wait (bounded) until it is healthy."""
        check = subprocess.run([BINARY, f"--config.file={self.config}", "--config.check"], capture_output=True,
                               timeout=30)
        assert check.returncode == 0, check.stderr.decode()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [BINARY, f"--config.file={self.config}", f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: http_get(f"http://127.0.0.1:{self.port}/-/healthy", timeout=1)[0] == 200, timeout=15)
        return self

    def stop(self) -> None:
        """SIGTERM by PID and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def probe(self, module: str, target: str, timeout: float = 30.0) -> dict[str, float]:
        """One /probe run: every sample as {'name' or 'name{labels}': value}."""
        query = urllib.parse.urlencode({"module": module, "target": target})
        status, body, _ = http_get(f"http://127.0.0.1:{self.port}/probe?{query}", timeout=timeout)
        assert status == 200, body
        return parse_samples(body.decode().splitlines())

    def debug(self, module: str, target: str) -> str:
        """The probe's debug text (logs and metrics), for assertion messages."""
        query = urllib.parse.urlencode({"module": module, "target": target, "debug": "true"})
        return http_get(f"http://127.0.0.1:{self.port}/probe?{query}", timeout=30)[1].decode()


def parse_samples(lines: Iterable[str], drop_labels: Iterable[str] = ()) -> dict[str, float]:
    """Prometheus text lines to {'name' or 'name{a="b",...}': value} (labels sorted, minus those in drop_labels)."""
    dropped = set(drop_labels)
    samples: dict[str, float] = {}
    for line in lines:
        match = _SAMPLE_RE.match(line)
        if line.startswith("#") or match is None:
            continue
        name, labels, value = match.groups()
        pairs = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or "")
        kept = ",".join(f'{key}="{val}"' for key, val in sorted(pairs) if key not in dropped)
        samples[f"{name}{{{kept}}}" if kept else name] = float(value)
    return samples


def samples_of(samples: Iterable[Any]) -> dict[str, float]:
    """Our run's samples (collectors.base.Sample) in parse_samples' form (labels sorted), to compare with blackbox's."""
    out: dict[str, float] = {}
    for sample in samples:
        labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels))
        out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out
