"""The register kind: staff-kept CSV and YAML files as gauges, bad rows by line number, reloads, missing files."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from testlib import REPO

from agent.config import parse_config
from agent.errors import ConfigError, Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import register

DATA = REPO / "tests/testdata/register"
VN = dt.timezone(dt.timedelta(hours=7))
METRICS: list[dict[str, Any]] = [
    {"column": "certified", "metric_name": "egov_register_iso9001_certified", "help": "Certified.", "type": "bool"},
    {"column": "valid_until", "metric_name": "egov_register_iso9001_valid_until_timestamp_seconds",
     "help": "Certificate end.", "type": "date"},
    {"column": "satisfaction", "metric_name": "egov_register_satisfaction_ratio", "help": "Satisfied.",
     "type": "ratio", "labels": {"survey": "survey"}},
    {"column": "score", "metric_name": "egov_register_index766_score", "help": "Index 766."},
]


def settings(**extra: Any) -> register.RegisterSettings:
    return register.RegisterSettings.model_validate({"metrics": METRICS, **extra})


async def run(path: Path, s: register.RegisterSettings | None = None) -> ProbeResult:
    s = s or settings()
    return await run_job(Job("c", str(path), f"m-{path.name}", "other", 300.0, 5.0, register.SPEC, s))


def values(result: ProbeResult, name: str) -> dict[tuple[str, ...], float]:
    return {tuple(v for _, v in s.labels): s.value for s in result.samples if s.name == name}


def midnight(year: int, month: int, day: int) -> float:
    return dt.datetime(year, month, day, tzinfo=VN).timestamp()


def bad_lines(result: ProbeResult) -> dict[int, str]:
    out = {}
    for line in result.lines:
        if line.level == "warning" and " line " in line.message:
            number, _, reason = line.message.split(" line ", 1)[1].partition(": ")
            out[int(number)] = reason
    return out


async def test_good_csv(tmp_path: Path) -> None:
    path = tmp_path / "register.csv"
    shutil.copy(DATA / "good.csv", path)
    result = await run(path)
    assert result.success, result.error
    assert values(result, "egov_register_iso9001_certified") == {
        ("000.00.00.H49",): 1, ("000.00.01.H49",): 1, ("000.00.15.H49",): 0, ("000.00.16.H49",): 1}
    assert values(result, "egov_register_iso9001_valid_until_timestamp_seconds") == {
        ("000.00.00.H49",): midnight(2027, 12, 31), ("000.00.01.H49",): midnight(2027, 6, 30),
        ("000.00.16.H49",): midnight(2026, 3, 15)}
    assert values(result, "egov_register_satisfaction_ratio") == pytest.approx({
        ("000.00.00.H49", "2026-Q3"): 0.965, ("000.00.01.H49", "2026-Q3"): 0.91,
        ("000.00.15.H49", "2026-Q3"): 0.88, ("000.00.16.H49", "2026-Q2"): 1.0})
    assert values(result, "egov_register_index766_score") == {
        ("000.00.00.H49",): 84.6, ("000.00.15.H49",): 79.25, ("000.00.16.H49",): 81}
    assert values(result, "egov_register_rows") == {(): 4}
    assert values(result, "egov_register_bad_rows") == {(): 0}
    assert values(result, "egov_register_file_modified_timestamp_seconds") == {(): path.stat().st_mtime}
    assert result.partial_errors == {}


async def test_bad_rows_are_reported_with_line_numbers_and_good_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "register.csv"
    shutil.copy(DATA / "bad.csv", path)
    result = await run(path)
    assert result.success, result.error
    lines = bad_lines(result)
    assert sorted(lines) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert "'30/02/2027' is not a valid date" in lines[3]
    assert "no agency code in column 'org_id'" in lines[4]
    assert "column 'certified': 'maybe' is not yes/no" in lines[5]
    assert "ratio '150%' is outside 0-1" in lines[6]
    assert "is already on line 2" in lines[7]
    assert "agency code '000 00 04 H49' is not" in lines[8]
    assert "8 cells but the header has 7 columns" in lines[9]
    assert "column 'score': 'sáu mươi' is not a number" in lines[10]  # a quoted cell spans lines 10-11
    assert values(result, "egov_register_index766_score") == {("000.00.00.H49",): 84.6, ("000.00.07.H49",): 60}
    assert values(result, "egov_register_satisfaction_ratio") == {
        ("000.00.00.H49", "2026-Q3"): 0.96, ("000.00.07.H49", "2026-Q3"): 0.75}
    assert values(result, "egov_register_rows") == {(): 2}
    assert values(result, "egov_register_bad_rows") == {(): 8}
    assert result.partial_errors == {"bad_row": 8}


async def test_yaml_register_good_and_bad_items(tmp_path: Path) -> None:
    good = await run(DATA / "good.yaml")
    assert good.success, good.error
    assert values(good, "egov_register_index766_score") == {
        ("000.00.00.H49",): 84.6, ("000.00.15.H49",): 79.25, ("000.00.16.H49",): 81}
    assert values(good, "egov_register_iso9001_certified") == {("000.00.00.H49",): 1, ("000.00.15.H49",): 0}
    assert values(good, "egov_register_iso9001_valid_until_timestamp_seconds") == {
        ("000.00.00.H49",): midnight(2027, 12, 31)}
    assert values(good, "egov_register_satisfaction_ratio") == {("000.00.16.H49", "2026-Q2"): 0.9}
    bad = await run(DATA / "bad.yaml")
    assert bad.success, bad.error
    lines = bad_lines(bad)
    assert sorted(lines) == [2, 3, 6]
    assert "must be a mapping" in lines[2]
    assert "plain value" in lines[3]
    assert "not a finite number" in lines[6]
    assert values(bad, "egov_register_index766_score") == {("000.00.00.H49",): 84.6, ("000.00.02.H49",): 12.5}
    assert values(bad, "egov_register_rows") == {(): 3}


async def test_changed_file_gives_new_values_and_unchanged_file_is_not_parsed_again(tmp_path: Path) -> None:
    path = tmp_path / "index766.csv"
    path.write_text("org_id,score\n000.00.00.H49,80.5\n", encoding="utf-8")
    s = settings(metrics=[METRICS[3]])
    first = await run(path, s)
    second = await run(path, s)
    assert values(first, "egov_register_index766_score") == values(second, "egov_register_index766_score") == {
        ("000.00.00.H49",): 80.5}
    assert any("parsed" in line.message for line in first.lines)
    assert not any("parsed" in line.message for line in second.lines)
    # Same size, same mtime, same inode: only the bytes differ (a copy that kept the old timestamp).
    stat = path.stat()
    with path.open("r+", encoding="utf-8") as file:
        file.write("org_id,score\n000.00.00.H49,91.5\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    third = await run(path, s)
    assert values(third, "egov_register_index766_score") == {("000.00.00.H49",): 91.5}
    path.write_text("org_id,score\n000.00.00.H49,70\n000.00.01.H49,65.5\n", encoding="utf-8")
    fourth = await run(path, s)
    assert values(fourth, "egov_register_index766_score") == {("000.00.00.H49",): 70, ("000.00.01.H49",): 65.5}


async def test_missing_file_is_a_clear_failure_without_stale_values(tmp_path: Path) -> None:
    path = tmp_path / "iso.csv"
    shutil.copy(DATA / "good.csv", path)
    assert (await run(path)).success
    path.unlink()
    result = await run(path)
    assert not result.success
    assert result.outcome is Outcome.CONNECTION_FAILED
    assert result.error == f"register file {path} does not exist"
    assert not values(result, "egov_register_index766_score")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"org_id,score\n", "the header has no column 'certified'"),
        (b"", "the file is empty"),
        (b"org_id,certified,certified\n", "column 'certified' appears twice in the header"),
        ("org_id,score\n000.00.00.H49,1\n".encode("utf-16"), "not UTF-8 text"),
    ],
)
async def test_unreadable_csv_is_a_protocol_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = await run(path)
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert message in result.error


async def test_utf8_bom_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefforg_id;satisfaction;survey\n000.00.00.H49;97,1%;Q3\n".encode())
    result = await run(path, settings(metrics=[METRICS[2]]))
    assert result.success, result.error
    assert values(result, "egov_register_satisfaction_ratio") == pytest.approx({("000.00.00.H49", "Q3"): 0.971})


async def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text("org_id,score\n" + "000.00.00.H49,1\n" * 100, encoding="utf-8")
    result = await run(path, settings(metrics=[METRICS[3]], max_bytes=200))
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert "more than max_bytes (200)" in result.error


OFFICE = "office: {org_id: 000.00.00.H49, name: test, level: province}\n"


def load(module_body: str, target: str = "/srv/register.csv") -> None:
    parse_config((OFFICE + f"""modules:
  reg:
    kind: register
    register:
{module_body}checks:
  - {{name: reg, module: reg, service: other, targets: ["{target}"], interval: 5m}}
""").encode(), "agent.yaml")


@pytest.mark.parametrize(
    ("body", "target", "message"),
    [
        ("      metrics: [{column: d, metric_name: egov_register_until, help: h, type: date}]\n", "/srv/r.csv",
         "must end in _timestamp_seconds"),
        ("      metrics: [{column: d, metric_name: egov_x, help: h, labels: {org_id: d}}]\n", "/srv/r.csv",
         "label 'org_id' is reserved"),
        ("      metrics: [{column: d, metric_name: egov_x, help: h, labels: {agency: d}}]\n", "/srv/r.csv",
         "label 'agency' is reserved"),
        ("      metrics: [{column: d, metric_name: egov_x_total, help: h}]\n", "/srv/r.csv", "no _total suffix"),
        ("      metrics: [{column: d, metric_name: egov_x, help: h}, {column: e, metric_name: egov_x, help: h}]\n",
         "/srv/r.csv", "metric_name 'egov_x' is used twice"),
        ("      metrics: [{column: d, metric_name: egov_x, help: h, type: text}]\n", "/srv/r.csv", "type"),
        ("      metrics: [{column: d, metric_name: egov_x, help: h}]\n", "register.csv", "absolute path"),
        ("      metrics: [{column: d, metric_name: egov_x, help: h}]\n", "/srv/register.xlsx",
         "name it .csv, .yaml or .yml"),
        ("      utc_offset: '7'\n      metrics: [{column: d, metric_name: egov_x, help: h}]\n", "/srv/r.csv",
         "is not like +07:00"),
    ],
)
def test_bad_settings_fail_at_load(body: str, target: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(body, target)
    assert message in caught.value.render()


@pytest.mark.slow
def test_probe_command_shows_bad_lines(tmp_path: Path) -> None:
    register_file = tmp_path / "iso.csv"
    shutil.copy(DATA / "bad.csv", register_file)
    config = tmp_path / "agent.yaml"
    config.write_text((REPO / "config/examples/register.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "agent", "probe", "--config", str(config), "--module",
                          "iso9001_register", str(register_file), "--debug"],
                         capture_output=True, text=True, timeout=60, check=False)
    # bad.csv has none of the example's Vietnamese column names: the whole file is refused, naming the column.
    assert out.returncode == 1
    assert "the header has no column 'chung_nhan_iso9001'" in out.stdout + out.stderr
    shutil.copy(REPO / "config/examples/register/iso9001.csv", register_file)
    with register_file.open("a", encoding="utf-8") as file:
        file.write("000.00.17.H49,UBND huyện Tiên Phước,có,31/02/2027\n")
    out = subprocess.run([sys.executable, "-m", "agent", "probe", "--config", str(config), "--module",
                          "iso9001_register", str(register_file), "--debug"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert f"{register_file} line 6: column 'hieu_luc_den': '31/02/2027' is not a valid date" in out.stderr
    assert 'egov_register_iso9001_certified{agency="000.00.16.H49"' in out.stdout
    assert "egov_register_bad_rows{" in out.stdout


@pytest.mark.slow
def test_running_agent_exports_the_register_and_follows_edits(start_agent: Any, tmp_path: Path) -> None:
    from testlib import OFFICE_YAML, wait_for

    path = tmp_path / "index766.csv"
    path.write_text("org_id,score\n000.00.15.H49,79.25\n", encoding="utf-8")
    agent = start_agent(OFFICE_YAML + f"""
modules:
  index766:
    kind: register
    timeout: 2s
    register:
      metrics:
        - {{column: score, metric_name: egov_register_index766_score, help: Weekly Index 766 score.}}
checks:
  - {{name: index766, module: index766, service: publicservice, targets: ["{path}"], interval: 3s}}
""")
    series = 'egov_register_index766_score{agency="000.00.15.H49",check="index766"'

    def value() -> str | None:
        line = next((x for x in agent.metrics().splitlines() if x.startswith(series)), None)
        return line.rsplit(" ", 1)[1] if line else None

    assert wait_for(lambda: value() == "79.25", timeout=15)
    text = agent.metrics()
    assert "# TYPE egov_register_index766_score gauge" in text
    assert "# HELP egov_register_index766_score Weekly Index 766 score." in text
    path.write_text("org_id,score\n000.00.15.H49,82.5\n000.00.16.H49,bad\n", encoding="utf-8")
    assert wait_for(lambda: value() == "82.5", timeout=15)
    assert 'egov_register_bad_rows{check="index766"' in agent.metrics()
