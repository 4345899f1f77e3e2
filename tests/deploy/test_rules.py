"""deploy/prometheus and deploy/alertmanager: promtool and amtool accept the files, every alert follows the
conventions and has a unit test where it fires and one where it does not, and Alertmanager routes as documented."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes.promstack import DEPLOY, binary

RULES = DEPLOY / "prometheus" / "rules"
RULE_FILES = sorted(RULES.glob("*.yml"))
RULE_TESTS = sorted((RULES / "tests").glob("*.test.yml"))
ALERTMANAGER = DEPLOY / "alertmanager"


def _run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def _alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


def _alert_tests() -> list[dict[str, Any]]:
    cases = []
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def test_promtool_check_rules() -> None:
    fixture = RULES / "tests" / "inventory.rules.yml"
    result = _run(binary("promtool"), "check", "rules", *map(str, RULE_FILES), str(fixture))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool unit tests"
    result = _run(binary("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The unit tests see the rules: with the service alert's threshold broken, promtool reports a failure."""
    copy = tmp_path / "rules"
    (copy / "tests").mkdir(parents=True)
    for path in RULE_FILES:
        text = path.read_text(encoding="utf-8")
        (copy / path.name).write_text(text.replace('service=~"portal|dms|mail|onestop|publicservice|lgsp"} == 0',
                                                   'service=~"portal|dms|mail|onestop|publicservice|lgsp"} == 1'),
                                      encoding="utf-8")
    for path in (RULES / "tests").iterdir():
        (copy / "tests" / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    result = _run(binary("promtool"), "test", "rules", *(str(copy / "tests" / p.name) for p in RULE_TESTS))
    assert result.returncode == 1
    assert "EgovServiceDown" in result.stdout + result.stderr


def test_prometheus_example_config_is_valid() -> None:
    result = _run(binary("promtool"), "check", "config", "--syntax-only", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["storage"]["tsdb"]["out_of_order_time_window"] == "7d"
    assert "egov-agent" in {job["job_name"] for job in config["scrape_configs"]}, "the rules use up{job=\"egov-agent\"}"


def test_every_alert_follows_conventions() -> None:
    rules = _alert_rules()
    assert len({rule["alert"] for rule in rules}) >= 14
    for rule in rules:
        name = rule["alert"]
        assert name.startswith("Egov") and name[4].isupper(), name
        assert "for" in rule, f"{name}: no for:"
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        for key in ("summary", "description"):
            assert key in rule["annotations"], f"{name}: no {key}"
        if name not in {"EgovNoOfficeHeard"}:
            # names the office: by name (or org_id when the office is unknown) and level
            text = rule["annotations"]["summary"] + rule["annotations"]["description"]
            assert "$labels.name" in text and "$labels.level" in text, name


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = _alert_tests()
    for name in {rule["alert"] for rule in _alert_rules()}:
        fired = [case for case in cases if case["alertname"] == name and case.get("exp_alerts")]
        quiet = [case for case in cases if case["alertname"] == name and not case.get("exp_alerts")]
        assert fired, f"{name}: no unit test where it fires"
        assert quiet, f"{name}: no unit test where it does not fire"
        for case in fired:
            for alert in case["exp_alerts"]:
                assert set(alert.get("exp_annotations", {})) == {"summary", "description"}, name


def test_alertmanager_config_is_valid(tmp_path: Path) -> None:
    config = _alertmanager_config(tmp_path)
    result = _run(binary("amtool"), "check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


def test_alertmanager_inhibits_only_alerts_that_exist() -> None:
    names = {rule["alert"] for rule in _alert_rules()}
    config = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text(encoding="utf-8"))
    mentioned: set[str] = set()
    for rule in config["inhibit_rules"]:
        for matcher in (*rule["source_matchers"], *rule["target_matchers"]):
            if matcher.startswith("alertname"):
                mentioned.update(matcher.split("=", 1)[1].lstrip("~").strip('"').split("|"))
    assert mentioned <= names, mentioned - names
    wan = next(rule for rule in config["inhibit_rules"] if "EgovOfficeUnreachable" in str(rule["source_matchers"]))
    assert wan["equal"] == ["org_id"]
    assert "EgovServiceDown" in str(wan["target_matchers"])
    assert config["route"]["group_by"] == ["district", "alertname"]


@pytest.mark.parametrize(("labels", "receivers"), [
    pytest.param({"level": "province", "severity": "critical"}, "province-it", id="province office"),
    pytest.param({"level": "department", "severity": "warning"}, "province-it", id="department"),
    pytest.param({"level": "commune", "district": "000.00.15.H49", "severity": "warning"},
                 "district-15-nuithanh", id="commune warning: its district only"),
    pytest.param({"level": "commune", "district": "000.00.15.H49", "severity": "critical"},
                 "district-15-nuithanh,province-it", id="commune critical: district and province"),
    pytest.param({"level": "district", "district": "000.00.16.H49", "severity": "critical"},
                 "district-16-tamky,province-it", id="district office"),
    pytest.param({"level": "commune", "district": "000.00.99.H49", "severity": "warning"},
                 "province-it", id="district without its own route"),
])
def test_alertmanager_routes_by_level_and_district(tmp_path: Path, labels: dict[str, str], receivers: str) -> None:
    config = _alertmanager_config(tmp_path)
    result = _run(binary("amtool"), "config", "routes", "test", f"--config.file={config}",
                  *(f"{key}={value}" for key, value in {"alertname": "EgovServiceDown", **labels}.items()))
    assert result.stdout.strip() == receivers, result.stdout + result.stderr


def test_notification_template_renders() -> None:
    result = _run(binary("amtool"), "template", "render", f"--template.glob={ALERTMANAGER / 'templates' / '*.tmpl'}",
                  "--template.text", '{{ template "egov.subject" . }}\n{{ template "egov.html" . }}')
    assert result.returncode == 0, result.stderr
    assert "<ul>" in result.stdout and "since" in result.stdout


def _alertmanager_config(tmp_path: Path) -> Path:
    """The production config with its template glob pointing at the checkout (amtool then parses them)."""
    text = (ALERTMANAGER / "alertmanager.yml").read_text(encoding="utf-8")
    path = tmp_path / "alertmanager.yml"
    path.write_text(text.replace("/etc/prometheus/alertmanager_templates/*.tmpl",
                                 str(ALERTMANAGER / "templates" / "*.tmpl")), encoding="utf-8")
    return path
