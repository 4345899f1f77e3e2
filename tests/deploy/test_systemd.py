"""deploy/systemd: the hardened unit (parsed, systemd-analyze verify and security), install.sh (--root, --dry-run)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy/systemd/egov-agent.service"
DROPIN = REPO / "deploy/systemd/egov-agent.service.d/icmp-raw.conf"
INSTALL = REPO / "deploy/systemd/install.sh"
AGENT_BIN = "/opt/egov-agent/venv/bin/egov-agent"


def unit_sections(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd's syntax: repeated keys accumulate (configparser would refuse or keep only the last)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path}: key outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_unit_hardening() -> None:
    sections = unit_sections(UNIT)
    service = sections["Service"]

    def one(key: str) -> str:
        assert len(service.get(key, [])) == 1, f"{key}: {service.get(key)}"
        return service[key][0]

    assert one("User") == "egov-agent"
    assert one("Group") == "egov-agent"
    assert one("DynamicUser") == "no"
    assert one("ProtectSystem") == "strict"
    assert one("ProtectHome") in ("yes", "read-only", "tmpfs")
    assert one("PrivateTmp") == "yes"
    assert one("NoNewPrivileges") == "yes"
    assert one("StateDirectory") == "egov-agent"
    assert one("ConfigurationDirectory") == "egov-agent"
    assert one("CapabilityBoundingSet") == ""  # empty: no capability at all
    assert one("AmbientCapabilities") == ""
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("Restart") == "on-failure"
    assert re.fullmatch(r"\d+[KMG]", one("MemoryMax"))
    assert one("ExecStart").startswith(f"{AGENT_BIN} run --config /etc/egov-agent/config.yaml")
    assert not [value for values in service.values() for value in values if "CAP_" in value]
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


def test_icmp_dropin_grants_only_cap_net_raw() -> None:
    assert unit_sections(DROPIN) == {"Service": {"CapabilityBoundingSet": ["CAP_NET_RAW"],
                                                 "AmbientCapabilities": ["CAP_NET_RAW"]}}


def _verifiable(tmp_path: Path, with_dropin: bool = False) -> Path:
    """The unit with ExecStart pointing at an executable that exists (verify checks it)."""
    fake = tmp_path / "egov-agent"
    fake.write_text("#!/bin/sh\n", encoding="utf-8")
    fake.chmod(0o755)
    unit = tmp_path / "egov-agent.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(AGENT_BIN, str(fake)), encoding="utf-8")
    if with_dropin:
        (tmp_path / "egov-agent.service.d").mkdir()
        shutil.copy(DROPIN, tmp_path / "egov-agent.service.d/icmp-raw.conf")
    return unit


@pytest.mark.parametrize("with_dropin", [False, True], ids=["unit", "unit with icmp-raw drop-in"])
def test_systemd_analyze_verify(tmp_path: Path, with_dropin: bool) -> None:
    unit = _verifiable(tmp_path, with_dropin)
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # Unknown keys and bad values are only warnings: any line about our unit is a failure.
    assert "egov-agent" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_systemd_analyze_verify_notices_a_broken_unit(tmp_path: Path) -> None:
    unit = _verifiable(tmp_path)
    unit.write_text(unit.read_text(encoding="utf-8").replace("ProtectSystem=", "ProtectSystm="), encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert "Unknown key 'ProtectSystm'" in done.stderr


def test_systemd_analyze_security(tmp_path: Path) -> None:
    unit = _verifiable(tmp_path)
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    found = re.search(r"Overall exposure level for egov-agent\.service: (\d+\.\d+) (\w+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0, done.stdout  # systemd calls 0-2 "OK"; a unit with no hardening scores 9.6


def _install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=300)


def test_install_dry_run_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    done = _install("--root", str(root), "--dry-run")
    assert done.returncode == 0, done.stderr
    planned = done.stdout.splitlines()
    assert all(line.startswith("+ ") for line in planned)
    assert any(line.startswith("+ useradd --prefix") and line.endswith(" egov-agent") for line in planned)
    assert f"+ python3 -m venv {root}/opt/egov-agent/venv" in planned
    assert f"+ install -m 0644 {UNIT} {root}/etc/systemd/system/egov-agent.service" in planned
    assert f"+ systemctl --root={root} enable egov-agent.service" in planned
    assert "dry run: nothing was changed" in done.stderr
    assert list(root.iterdir()) == []


def test_install_usage_errors(tmp_path: Path) -> None:
    done = _install("--bogus")
    assert done.returncode == 2
    assert "unknown option --bogus" in done.stderr
    assert "Usage: install.sh" in done.stderr
    done = _install("--root", str(tmp_path), "--config", str(tmp_path / "none.yaml"))
    assert done.returncode == 1
    assert f"config {tmp_path / 'none.yaml'} does not exist" in done.stderr
    done = _install("--root", str(tmp_path / "missing"))
    assert done.returncode == 2
    assert "is not a directory" in done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as a wheel, built offline from a copy of the checkout (pip builds in the source tree)."""
    stage = tmp_path_factory.mktemp("stage")
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / part, stage / part)
    for part in ("agent", "collectors", "exporters"):
        shutil.copytree(REPO / part, stage / part, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(stage)], check=True, capture_output=True, timeout=300)
    (found,) = out.glob("egov_agent-*.whl")
    return found


@pytest.mark.slow  # creates a virtualenv and installs into it, three times
def test_install_into_root_is_idempotent(tmp_path: Path, wheel: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "office.yaml"
    config.write_text((REPO / "config/agent.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    common = ("--root", str(root), "--source", str(wheel), "--pip-options", "--no-deps --no-index",
              "--config", str(config))
    done = _install(*common)
    assert done.returncode == 0, done.stdout + done.stderr

    users = [line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("egov-agent:")]
    assert len(users) == 1
    _, _, uid, gid, _, home, shell = users[0].split(":")
    assert (home, shell) == ("/var/lib/egov-agent", "/usr/sbin/nologin")
    assert int(uid) < 1000  # a system user
    groups = [line for line in (root / "etc/group").read_text().splitlines() if line.startswith("egov-agent:")]
    assert [line.split(":")[2] for line in groups] == [gid]

    venv = root / "opt/egov-agent/venv"
    assert os.access(venv / "bin/egov-agent", os.X_OK)
    assert "agent.cli" in (venv / "bin/egov-agent").read_text(encoding="utf-8")
    assert list(venv.glob("lib/python3*/site-packages/agent/inventory.py"))
    installed = root / "etc/egov-agent/config.yaml"
    assert installed.read_text(encoding="utf-8") == config.read_text(encoding="utf-8")
    assert stat.S_IMODE(installed.stat().st_mode) == 0o640
    assert installed.stat().st_gid == int(gid)
    assert stat.S_IMODE((root / "etc/egov-agent").stat().st_mode) == 0o750
    assert 'OPTIONS=""' in (root / "etc/egov-agent/egov-agent.env").read_text(encoding="utf-8")
    unit = root / "etc/systemd/system/egov-agent.service"
    assert unit.read_bytes() == UNIT.read_bytes()
    wants = root / "etc/systemd/system/multi-user.target.wants/egov-agent.service"
    assert str(wants.readlink()) == "/etc/systemd/system/egov-agent.service"
    assert not (root / "etc/systemd/system/egov-agent.service.d").exists()

    # Again, after the office edited its config, and with the raw-ICMP drop-in: the config is kept, nothing doubles.
    installed.write_text(installed.read_text(encoding="utf-8") + "# edited on the office PC\n", encoding="utf-8")
    done = _install(*common, "--icmp-raw")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "keeping the existing" in done.stderr
    assert installed.read_text(encoding="utf-8").endswith("# edited on the office PC\n")
    assert _entries(root / "etc/passwd") == 1
    dropin = root / "etc/systemd/system/egov-agent.service.d/icmp-raw.conf"
    assert dropin.read_bytes() == DROPIN.read_bytes()

    done = _install(*common)  # without --icmp-raw the capability goes away again
    assert done.returncode == 0, done.stdout + done.stderr
    assert not dropin.exists()
    assert _entries(root / "etc/group") == 1


def _entries(path: Path) -> int:
    return sum(line.startswith("egov-agent:") for line in path.read_text(encoding="utf-8").splitlines())
