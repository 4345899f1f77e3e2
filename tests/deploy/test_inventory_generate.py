"""`egov-agent inventory generate`: per-office configs that load, file_sd targets, and the inventory rules."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import load_config
from agent.inventory import load_inventory
from agent.inventory_generate import GenerateError, generate

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "config/examples/inventory/quangnam.yaml"
TEMPLATES = REPO / "config/templates"
LABELS = {"org_id", "name", "level", "parent_id", "district", "hierarchy"}


@pytest.fixture(scope="module")
def raw() -> dict[str, dict[str, Any]]:
    """The sample's offices as plain YAML, to compute expectations without the code under test."""
    offices = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))["offices"]
    return {office["org_id"]: office for office in offices}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    done = subprocess.run([sys.executable, "-m", "agent", "inventory", "generate", str(SAMPLE), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith(f"{out}: 309 agent configs in agents/, ")
    return out


def _district(raw: dict[str, dict[str, Any]], org_id: str) -> str:
    office = raw[org_id]
    if office["level"] == "district":
        return org_id
    if office["level"] == "commune" and office["hierarchy"] == "qn-2012":
        return str(office["parent_id"])
    return ""


@pytest.mark.slow  # generates and loads the ~300 configs of the sample
def test_every_office_gets_a_config_that_loads(generated: Path, raw: dict[str, dict[str, Any]]) -> None:
    files = sorted((generated / "agents").glob("*.yaml"))
    assert {path.stem for path in files} == set(raw)
    levels = {"qn-2012": ["province", "district", "commune"], "dn-2025": ["city", "commune"]}
    for path in files:
        config = load_config(path)
        office = raw[path.stem]
        assert config.office.org_id == office["org_id"]
        assert config.office.name == office["name"]
        assert config.office.level == office["level"]
        assert config.office.parent_id == office["parent_id"]
        assert config.office.admin_code == office.get("admin_code")
        assert config.hierarchy.name == office["hierarchy"]
        assert config.hierarchy.levels == levels[office["hierarchy"]]
        if "agent" in office:  # scraped: listens on its address and never also pushes
            assert config.web.listen_address == office["agent"]
            assert config.remote_write == []
        else:
            assert config.web.listen_address == "127.0.0.1:9470"
            assert len(config.remote_write) == 1
        services = {check.service for check in config.checks}
        assert services <= {*office["services"], "host", "wan"}
        assert "host" in services


@pytest.mark.slow  # generates and loads the ~300 configs of the sample
def test_templates_fill_the_wan_targets(generated: Path, raw: dict[str, dict[str, Any]]) -> None:
    def checks(org_id: str) -> dict[str, list[str]]:
        config = load_config(generated / "agents" / f"{org_id}.yaml")
        return {check.name: check.targets for check in config.checks}

    tam_xuan = next(o for o in raw.values() if o["name"] == "UBND xã Tam Xuân 1")
    district = raw[tam_xuan["parent_id"]]
    got = checks(tam_xuan["org_id"])
    assert got["wan-gateway"] == [tam_xuan["wan_gateway"]]
    assert got["wan-district"] == [district["wan_gateway"]]
    assert got["wan-province"] == [raw["000.00.00.H49"]["wan_gateway"]]
    assert "mail-smtp" not in got  # the commune does not list mail
    # dn-2025 has no district: that check is dropped; the dn-2025 template points at the city.
    merged = next(o for o in raw.values() if o["hierarchy"] == "dn-2025" and o["level"] == "commune")
    got = checks(merged["org_id"])
    assert "wan-district" not in got
    assert got["wan-city"] == [raw["000.00.00.H48"]["wan_gateway"]]
    assert got["dms"] == ["https://qlvb.danang.gov.vn/dang-nhap"]
    # A district pings the routers of its communes.
    communes = sorted({o["wan_gateway"] for o in raw.values() if o.get("parent_id") == district["org_id"]})
    assert checks(district["org_id"])["wan-communes"] == communes
    assert "mail-smtp" in checks(district["org_id"])


@pytest.mark.slow  # generates and loads the ~300 configs of the sample
def test_file_sd_targets(generated: Path, raw: dict[str, dict[str, Any]]) -> None:
    pull = {org_id: office for org_id, office in raw.items() if "agent" in office}
    seen: dict[str, str] = {}
    for path in sorted((generated / "prometheus/file_sd").glob("*.json")):
        groups = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(groups, list) and groups
        for group in groups:
            assert set(group) == {"targets", "labels"}
            assert set(group["labels"]) == LABELS
            assert all(isinstance(value, str) for value in group["labels"].values())
            org_id = group["labels"]["org_id"]
            office = pull[org_id]
            assert group["targets"] == [office["agent"]]
            assert group["labels"] == {"org_id": org_id, "name": office["name"], "level": office["level"],
                                       "parent_id": office["parent_id"] or "",
                                       "district": _district(raw, org_id), "hierarchy": office["hierarchy"]}
            assert path.stem == (_district(raw, org_id) or office["level"])
            seen[org_id] = path.name
    assert set(seen) == set(pull)
    assert seen["000.00.00.H49"] == "province.json"
    assert seen["000.00.00.H48"] == "city.json"


@pytest.mark.slow  # generates and loads the ~300 configs of the sample
def test_rules_file_passes_promtool(generated: Path, raw: dict[str, dict[str, Any]]) -> None:
    rules_path = generated / "prometheus/inventory.rules.yml"
    done = subprocess.run(["promtool", "check", "rules", str(rules_path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(raw)} rules found" in done.stdout
    rules = yaml.safe_load(rules_path.read_text(encoding="utf-8"))["groups"][0]["rules"]
    assert [rule["labels"]["org_id"] for rule in rules] == list(raw)
    for rule in rules:
        office = raw[rule["labels"]["org_id"]]
        assert rule["record"] == "egov_inventory_office"
        assert rule["expr"] == "vector(1)"
        assert rule["labels"] == {"org_id": office["org_id"], "name": office["name"], "level": office["level"],
                                  "parent_id": office["parent_id"] or "", "district": _district(raw, office["org_id"]),
                                  "hierarchy": office["hierarchy"], "delivery": "pull" if "agent" in office else "push"}


@pytest.mark.slow  # generates and loads the ~300 configs of the sample
def test_rules_evaluate_in_prometheus(generated: Path, raw: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    tam_xuan = next(o for o in raw.values() if o["name"] == "UBND xã Tam Xuân 1")
    communes_qn = sum(o["level"] == "commune" and o["hierarchy"] == "qn-2012" for o in raw.values())
    push = sum("agent" not in o for o in raw.values())
    labels = (f'{{__name__="egov_inventory_office", org_id="{tam_xuan["org_id"]}", name="UBND xã Tam Xuân 1", '
              f'level="commune", parent_id="{tam_xuan["parent_id"]}", district="{tam_xuan["parent_id"]}", '
              'hierarchy="qn-2012", delivery="push"}')
    test = {
        "rule_files": [str(generated / "prometheus/inventory.rules.yml")],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [],
            "promql_expr_test": [
                {"expr": "count(egov_inventory_office)", "eval_time": "2m", "exp_samples": [{"value": len(raw)}]},
                {"expr": 'count(egov_inventory_office{level="commune", hierarchy="qn-2012"})', "eval_time": "2m",
                 "exp_samples": [{"value": communes_qn}]},
                {"expr": 'count(egov_inventory_office{delivery="push"})', "eval_time": "2m",
                 "exp_samples": [{"value": push}]},
                {"expr": f'egov_inventory_office{{org_id="{tam_xuan["org_id"]}"}}', "eval_time": "2m",
                 "exp_samples": [{"labels": labels, "value": 1}]},
            ],
        }],
    }
    path = tmp_path / "inventory.test.yml"
    path.write_text(yaml.safe_dump(test, allow_unicode=True, sort_keys=False), encoding="utf-8")
    done = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow  # generates and loads the ~300 configs of the sample
def test_date_selects_one_hierarchy_and_removes_stale_files(tmp_path: Path, raw: dict[str, dict[str, Any]]) -> None:
    inventory = load_inventory(str(SAMPLE))
    report = generate(inventory, tmp_path, TEMPLATES)
    assert report.configs == len(raw)
    assert report.removed == 0
    report = generate(inventory, tmp_path, TEMPLATES, date(2025, 7, 1))
    new = {org_id for org_id, office in raw.items() if office["hierarchy"] == "dn-2025"}
    assert report.configs == len(new)
    assert {path.stem for path in (tmp_path / "agents").glob("*.yaml")} == new
    assert {path.name for path in (tmp_path / "prometheus/file_sd").glob("*.json")} == {"city.json"}
    old_pull_districts = {_district(raw, o) for o in raw if "agent" in raw[o] and raw[o]["hierarchy"] == "qn-2012"}
    assert report.removed == len(raw) - len(new) + len(old_pull_districts)
    rules = yaml.safe_load((tmp_path / "prometheus/inventory.rules.yml").read_text(encoding="utf-8"))
    assert {rule["labels"]["org_id"] for rule in rules["groups"][0]["rules"]} == new
    assert not list(tmp_path.rglob(".*.tmp"))


INVENTORY = """\
offices:
  - {org_id: P, name: UBND tỉnh, level: province, hierarchy: qn-2012, agent: "127.0.0.1:19470",
     wan_gateway: 127.0.0.1}
  - {org_id: D1, name: UBND huyện, level: district, parent_id: P, hierarchy: qn-2012, wan_gateway: 127.0.0.2,
     services: [dms]}
  - {org_id: C1, name: UBND xã, level: commune, parent_id: D1, hierarchy: qn-2012, services: [mail]}
"""


def _templates(tmp_path: Path, text: str, levels: tuple[str, ...] = ("province", "district", "commune")) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    for level in levels:
        (folder / f"{level}.yaml").write_text(text, encoding="utf-8")
    return folder


def _inventory(tmp_path: Path, text: str = INVENTORY) -> Any:
    path = tmp_path / "inventory.yaml"
    path.write_text(text, encoding="utf-8")
    return load_inventory(str(path))


def test_placeholders_and_dropped_checks(tmp_path: Path) -> None:
    templates = _templates(tmp_path, """\
web: {listen_address: "${listen_address}"}
checks:
  - {name: gw, module: icmp, service: wan, targets: ["${wan_gateway}", "${parent_wan_gateway}"], interval: 30s}
  - {name: dms, module: http_2xx, service: dms, targets: ["http://127.0.0.1:1/${org_id}"], interval: 30s}
  - {name: mail, module: smtp_starttls, service: mail, targets: ["127.0.0.1:25"], interval: 30s}
  - {name: host, module: host, service: host, targets: [localhost], interval: 30s}
remote_write:
  - {name: central, url: "http://127.0.0.1:1/api/v1/write"}
""")
    out = tmp_path / "out"
    generate(_inventory(tmp_path), out, templates)

    def load(org_id: str) -> Any:
        return load_config(out / "agents" / f"{org_id}.yaml")

    province, district, commune = load("P"), load("D1"), load("C1")
    assert {c.name: c.targets for c in province.checks} == {"gw": ["127.0.0.1"], "host": ["localhost"]}
    assert province.web.listen_address == "127.0.0.1:19470"
    assert province.remote_write == []
    assert {c.name: c.targets for c in district.checks} == {
        "gw": ["127.0.0.2", "127.0.0.1"], "dms": ["http://127.0.0.1:1/D1"], "host": ["localhost"]}
    assert [r.name for r in district.remote_write] == ["central"]
    assert {c.name: c.targets for c in commune.checks} == {
        "gw": ["127.0.0.2"], "mail": ["127.0.0.1:25"], "host": ["localhost"]}


@pytest.mark.parametrize(("template", "message"), [
    ("checks:\n  - {name: x, module: icmp, service: wan, targets: ['${gateway}'], interval: 30s}\n",
     "province.yaml: unknown placeholder ${gateway}; known: org_id, name, level,"),
    ("office: {org_id: x, name: x, level: province}\n",
     "province.yaml: office: written from the inventory; remove it from the template"),
    ("- a list\n", "province.yaml: a template is a YAML mapping"),
    ("checks: [\n", "province.yaml: cannot read template: while parsing a flow node"),
    ("checks:\n  - {name: x, module: nope, service: wan, targets: [localhost], interval: 30s}\n",
     "agents/P.yaml (from {templates}/province.yaml): checks[0].module: unknown module 'nope'"),
], ids=["unknown placeholder", "office in template", "not a mapping", "bad YAML", "invalid config"])
def test_bad_template_writes_nothing(tmp_path: Path, template: str, message: str) -> None:
    templates = _templates(tmp_path, template)
    out = tmp_path / "out"
    with pytest.raises(GenerateError) as caught:
        generate(_inventory(tmp_path), out, templates)
    assert message.replace("{templates}", str(templates)) in str(caught.value)
    assert not out.exists()


def test_missing_template(tmp_path: Path) -> None:
    templates = _templates(tmp_path, "{}\n", levels=("province", "district"))
    with pytest.raises(GenerateError) as caught:
        generate(_inventory(tmp_path), tmp_path / "out", templates)
    assert str(caught.value) == (f"office C1: no template: {templates}/qn-2012/commune.yaml nor "
                                 f"{templates}/commune.yaml exists")


def test_template_field_and_hierarchy_folder(tmp_path: Path) -> None:
    templates = _templates(tmp_path, "agent: {max_concurrent_runs: 1}\n")
    (templates / "qn-2012").mkdir()
    (templates / "qn-2012/commune.yaml").write_text("agent: {max_concurrent_runs: 2}\n", encoding="utf-8")
    (templates / "special.yaml").write_text("agent: {max_concurrent_runs: 3}\n", encoding="utf-8")
    inventory = _inventory(tmp_path, INVENTORY.replace("services: [dms]}", "services: [dms], template: special}"))
    out = tmp_path / "out"
    generate(inventory, out, templates)
    runs = {org_id: load_config(out / "agents" / f"{org_id}.yaml").agent.max_concurrent_runs
            for org_id in ("P", "D1", "C1")}
    assert runs == {"P": 1, "D1": 3, "C1": 2}


def test_secrets_only_the_office_has_are_warnings(tmp_path: Path) -> None:
    templates = _templates(tmp_path, """\
remote_write:
  - name: central
    url: http://127.0.0.1:1/api/v1/write
    bearer_token: {file: /etc/egov-agent/no-such-token-egov-test}
""")
    report = generate(_inventory(tmp_path), tmp_path / "out", templates)
    assert report.configs == 3
    secret = [w for w in report.warnings if "cannot read secret file /etc/egov-agent/no-such-token-egov-test" in w]
    assert [w.split(" ", 1)[0] for w in secret] == ["agents/D1.yaml", "agents/C1.yaml"]  # P is scraped: no push
    assert (tmp_path / "out/agents/C1.yaml").is_file()


def test_push_office_without_remote_write_is_warned(tmp_path: Path) -> None:
    report = generate(_inventory(tmp_path), tmp_path / "out", _templates(tmp_path, "{}\n"))
    assert report.warnings == [
        f"office {org_id} pushes (no agent address) but its template has no remote_write: nothing will reach the "
        "central store" for org_id in ("D1", "C1")]


def test_generate_command_fails_cleanly(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "inventory", "generate", str(SAMPLE), "--out",
                           str(tmp_path / "out"), "--templates", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"templates directory {tmp_path}/none does not exist: pass --templates DIR" in done.stderr
    assert not (tmp_path / "out").exists()


def test_unwritable_output(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(GenerateError, match=r"^.*/file: cannot write the generated files: Not a directory$"):
        generate(_inventory(tmp_path), tmp_path / "file", _templates(tmp_path, "{}\n"))


@pytest.mark.slow  # generates and validates ~300 configs and their bootstraps
def test_bootstraps_for_central_configuration(tmp_path: Path, raw: dict[str, dict[str, Any]]) -> None:
    """--config-url writes each office's bootstrap: its identity and web, and where its signed config comes from;
    every one loads as an agent config once the public key is where it says."""
    key = tmp_path / "signing"
    assert subprocess.run([sys.executable, "-m", "agent", "sign", "--generate-key", str(key)], capture_output=True,
                          timeout=60).returncode == 0
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "agent", "inventory", "generate", str(SAMPLE), "--out", str(out),
                           "--config-url", "https://config.quangnam.example/egov/", "--public-key",
                           f"{key}.pub", "--agent-public-key", "/etc/egov-agent/province.pub"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    files = sorted((out / "bootstrap").glob("*.yaml"))
    assert {path.stem for path in files} == set(raw)
    for path in files[:40]:
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert set(body) <= {"office", "hierarchy", "web", "agent", "config_source"}
        assert body["office"]["org_id"] == path.stem == raw[path.stem]["org_id"]
        assert body["config_source"] == {"url": f"https://config.quangnam.example/egov/{path.stem}.yaml",
                                         "public_key": "/etc/egov-agent/province.pub"}
        local = tmp_path / "local.yaml"
        local.write_text(path.read_text(encoding="utf-8").replace("/etc/egov-agent/province.pub", f"{key}.pub"),
                         encoding="utf-8")
        assert load_config(local).office.org_id == path.stem
    refused = subprocess.run([sys.executable, "-m", "agent", "inventory", "generate", str(SAMPLE), "--out",
                              str(tmp_path / "x"), "--config-url", "http://config.quangnam.example/"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--config-url needs an https:// URL and --public-key" in refused.stderr
