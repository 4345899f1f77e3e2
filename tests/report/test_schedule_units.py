"""deploy/systemd/egov-kpi-report.{service,timer}: a valid monthly schedule whose command the CLI accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

from testlib import REPO

from agent.cli import _parser

UNITS = REPO / "deploy" / "systemd"


def _unit(name: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (continuation lines joined)."""
    text = (UNITS / name).read_text(encoding="utf-8").replace("\\\n", " ")
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_timer_is_monthly_after_the_14th() -> None:
    timer = _unit("egov-kpi-report.timer")
    (calendar,) = timer["OnCalendar"]
    assert calendar == "*-*-16 06:00:00 Asia/Ho_Chi_Minh"
    assert timer["Persistent"] == ["true"]
    if shutil.which("systemd-analyze"):
        done = subprocess.run(["systemd-analyze", "calendar", "--iterations=2", calendar], capture_output=True,
                              text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        assert re.search(r"Next elapse: \w+ \d{4}-\d{2}-1[56] ", done.stdout), done.stdout


def test_service_command_is_accepted_by_the_cli() -> None:
    service = _unit("egov-kpi-report.service")
    assert service["Type"] == ["oneshot"]
    env = dict(pair.split("=", 1) for pair in shlex.split(service["Environment"][0]))
    (command,) = service["ExecStart"]
    words = [w for w in shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)] or "x", command))
             if w != "$KPI_OPTIONS"]
    assert words[0].endswith("/egov-agent") and words[1] == "kpi-report"
    args = _parser().parse_args(words[1:])
    assert args.period == "last" and args.window == "15-14" and args.format == "xlsx,csv,html,json"
    assert args.out == "/var/lib/egov-kpi-report" and service["StateDirectory"] == ["egov-kpi-report"]
