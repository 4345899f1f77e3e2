"""snmpsim (PyPI) serving recorded devices on 127.0.0.1: one .snmprec file per device, its name the community.

A recording is written from a dict {OID text: (snmprec type tag, value)} in OID order, as snmpsim requires; a value
may carry a variation (`"delay"` tag suffix) for slow answers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fakes.snmp import free_udp_port
from testlib import wait_for

# snmprec type tags (snmpsim's): INTEGER, OCTET STRING, OBJECT IDENTIFIER, Counter32, Gauge32, TimeTicks, Counter64
INTEGER, OCTETS, OID, COUNTER32, GAUGE32, TIMETICKS, COUNTER64 = "2", "4", "6", "65", "66", "67", "70"
Recording = dict[str, tuple[str, str]]


def write_recording(path: Path, recording: Recording) -> None:
    """Write `recording` as a .snmprec file in OID order."""
    lines = [f"{oid}|{tag}|{value}" for oid, (tag, value) in
             sorted(recording.items(), key=lambda item: tuple(int(part) for part in item[0].split(".")))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass
class Snmpsim:
    """snmpsim-command-responder over a data directory of recordings, stopped by PID."""

    directory: Path
    port: int = field(default_factory=free_udp_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        """Where the .snmprec recordings go (before start)."""
        path = self.directory / "data"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self, probe_community: str) -> Snmpsim:
        """Start the responder and wait (bounded) until `probe_community`'s device answers."""
        cache = self.directory / "cache"
        cache.mkdir(exist_ok=True)
        command = shutil.which("snmpsim-command-responder", path=str(Path(sys.executable).parent))
        assert command, "snmpsim is part of the test extra"
        # As root snmpsim must be told which user to run as; the interpreter may live under /root, which other
        # users cannot read, so it stays root (on 127.0.0.1 only).
        self.process = subprocess.Popen(
            [command, f"--data-dir={self.data}", f"--cache-dir={cache}",
             f"--agent-udpv4-endpoint=127.0.0.1:{self.port}", "--process-user=root", "--process-group=root",
             "--logging-method=null"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self._answers(probe_community), timeout=90)
        return self

    def stop(self) -> None:
        """SIGTERM by PID and wait (SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    @property
    def target(self) -> str:
        """The device address as a check names it."""
        return f"udp://127.0.0.1:{self.port}"

    def _answers(self, community: str) -> bool:
        assert self.process is not None and self.process.poll() is None, "snmpsim exited"
        done = subprocess.run(["snmpget", "-v2c", "-c", community, "-t", "0.5", "-r", "0", "-On",
                               f"127.0.0.1:{self.port}", "1.3.6.1.2.1.1.5.0"], capture_output=True, text=True,
                              timeout=10)
        return done.returncode == 0
