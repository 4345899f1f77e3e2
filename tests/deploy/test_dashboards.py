"""deploy/grafana: the dashboards' JSON structure and provisioning files, and every panel query (and variable query)
run against a real Prometheus holding agent data: a real agent scraped every second (host, http, tcp and icmp
checks) plus backfilled series of the kinds a single agent on this machine cannot produce (mail, maillog, portal,
SQL and register figures, SNMP, remote-write). Each query must return data, with the variables at "All" and at
one concrete office."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes.okserver import OkServer
from fakes.promstack import DEPLOY, Prometheus, binary, start_prometheus
from testlib import AgentProcess, free_port, wait_for

GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
INVENTORY_RULES = DEPLOY / "prometheus" / "rules" / "tests" / "inventory.rules.yml"
OFFICE = {"org_id": "000.00.20.H49", "level": "commune", "district": "000.00.15.H49"}  # in INVENTORY_RULES
DISTRICT_OFFICE = {"org_id": "000.00.15.H49", "level": "district"}
PROVINCE = {"org_id": "000.00.00.H49", "level": "province"}
ALL = {"level": ".*", "district": ".*", "office": ".*"}
CONCRETE = {"level": OFFICE["level"], "district": OFFICE["district"], "office": OFFICE["org_id"]}
DURATIONS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return [panel for panel in out if panel["type"] != "row"]


def _queries() -> list[tuple[str, str]]:
    """(where, expr) for every panel target and every query variable of every dashboard."""
    out = []
    for path in DASHBOARDS:
        board = _load(path)
        for panel in _panels(board):
            for target in panel["targets"]:
                out.append((f"{path.stem} / {panel['title']} / {target['refId']}", target["expr"]))
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
                assert match, variable["query"]
                out.append((f"{path.stem} / variable {variable['name']}", f"group by ({match[2]}) ({match[1]})"))
    return out


def _datasource_uids(node: object) -> set[str]:
    """Every datasource uid the JSON names, at any depth."""
    if isinstance(node, list):
        return set().union(*map(_datasource_uids, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["datasource"].get("uid", "")} if isinstance(node.get("datasource"), dict) else set()
    return found.union(*map(_datasource_uids, node.values()))


def _substitute(expr: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name in DURATIONS:
            return DURATIONS[name]
        assert name in values, f"unknown variable ${name} in {expr}"
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


def test_dashboards_are_grafana_json_with_a_datasource_variable() -> None:
    assert {path.stem for path in DASHBOARDS} >= {"egov-fleet", "egov-office", "egov-wan", "egov-portals", "egov-mail",
                                                  "egov-snmp", "egov-kpi"}
    uids = set()
    for path in DASHBOARDS:
        board = _load(path)
        assert board["uid"] == path.stem and board["uid"] not in uids
        uids.add(board["uid"])
        assert board["title"].startswith("egov / ") and 36 <= board["schemaVersion"] <= 41
        variables = board["templating"]["list"]
        assert variables[0]["type"] == "datasource" and variables[0]["query"] == "prometheus"
        names = {variable["name"] for variable in variables}
        for variable in variables[1:]:
            assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, variable["name"]
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        cells: set[tuple[int, int]] = set()
        for panel in _panels(board):
            where = f"{path.name}: {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, where
            mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                    for y in range(grid["y"], grid["y"] + grid["h"])}
            assert not mine & cells, f"{where} overlaps another panel"
            cells |= mine
            assert panel["targets"], where
            assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"]), where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}" and target["expr"].strip(), where
                used = set(re.findall(r"\$\{?(\w+)", target["expr"])) - set(DURATIONS)
                assert used <= names, f"{where}: undefined {used - names}"
        assert _datasource_uids(board) <= {"${datasource}", "-- Grafana --"}, f"{path.name}: a hard-coded datasource"


def test_provisioning_files() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "egov.yml").read_text(encoding="utf-8"))
    assert datasources["apiVersion"] == 1 and datasources["datasources"][0]["type"] == "prometheus"
    dashboards = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "egov.yml").read_text(encoding="utf-8"))
    provider = dashboards["providers"][0]
    assert dashboards["apiVersion"] == 1 and provider["type"] == "file" and provider["options"]["path"]


def test_variable_substitution_reaches_every_variable() -> None:
    for where, expr in _queries():
        for values in (ALL, CONCRETE):
            assert "$" not in _substitute(expr, values), where


@pytest.fixture
def prometheus_with_data(tmp_path: Path, start_agent: Callable[..., AgentProcess]) -> Iterator[Prometheus]:
    http = OkServer()
    prometheus: Prometheus | None = None
    try:
        agent = start_agent(_agent_config(tmp_path / "state", http.port))
        workdir = tmp_path / "prometheus"
        (workdir / "data").mkdir(parents=True)
        backfill = workdir / "backfill.om"
        backfill.write_text(_openmetrics(time.time()), encoding="utf-8")
        result = subprocess.run([binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(backfill),
                                 str(workdir / "data")], capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        (workdir / "inventory.rules.yml").write_text(INVENTORY_RULES.read_text(encoding="utf-8"), encoding="utf-8")
        (workdir / "egov-records.yml").write_text(
            (DEPLOY / "prometheus" / "rules" / "egov-records.yml").read_text(encoding="utf-8"), encoding="utf-8")
        prometheus = start_prometheus(workdir, {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": ["inventory.rules.yml", "egov-records.yml"],
            "scrape_configs": [{"job_name": "egov-agent", "honor_labels": True, "static_configs": [
                {"targets": [agent.address], "labels": {"org_id": OFFICE["org_id"], "level": OFFICE["level"]}}]}],
        })
        yield prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        http.stop()


@pytest.mark.slow
def test_every_dashboard_query_returns_data(prometheus_with_data: Prometheus) -> None:
    prometheus = prometheus_with_data
    ready = ('rate(smokeping_response_duration_seconds_bucket{service="wan"}[5m])',
             f'org_id_service:probe_success:avg1h{{org_id="{OFFICE["org_id"]}", service="dms"}}',
             f'org_id_service:probe_success:avg1h{{org_id="{DISTRICT_OFFICE["org_id"]}", service="portal"}}',
             'rate(node_cpu_seconds_total[5m])', "target:egov_icmp_loss_ratio:avg10m",
             'org_id_service:probe_success:max{service="onestop"} == 0')
    for expr in ready:
        wait_for(lambda expr=expr: prometheus.query(expr), timeout=30, interval=0.5)
    at = time.time()
    empty = []
    queries = _queries()
    assert len(queries) > 90
    for where, expr in queries:
        for label, values in (("all", ALL), ("one office", CONCRETE)):
            if not prometheus.query(_substitute(expr, values), at=at):
                empty.append(f"{where} [{label}]: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
    # the check can fail: a misspelt metric name returns nothing
    assert prometheus.query('sum(egov_mail_active_account{window="30d"})', at=at) == []


def _agent_config(state_dir: Path, http_port: int) -> str:
    closed = free_port()
    return yaml.safe_dump({
        "office": {"org_id": OFFICE["org_id"], "name": "UBND xã Tam Xuân 1", "level": OFFICE["level"],
                   "parent_id": OFFICE["district"]},
        "agent": {"state_dir": str(state_dir)},
        "modules": {
            "host_fast": {"kind": "host", "timeout": "900ms"},
            "http_fast": {"kind": "http", "timeout": "900ms"},
            "tcp_fast": {"kind": "tcp", "timeout": "900ms"},
            "wan_icmp": {"kind": "icmp", "timeout": "900ms",
                         "icmp": {"packets": 3, "interval": "100ms", "preferred_ip_protocol": "ip4"}},
        },
        "checks": [
            {"name": "host", "module": "host_fast", "service": "host", "targets": ["localhost"], "interval": "1s"},
            {"name": "portal", "module": "http_fast", "service": "portal",
             "targets": [f"http://127.0.0.1:{http_port}/"], "interval": "1s"},
            {"name": "dms", "module": "tcp_fast", "service": "dms", "targets": [f"127.0.0.1:{http_port}"],
             "interval": "1s"},
            {"name": "onestop", "module": "http_fast", "service": "onestop",
             "targets": [f"http://127.0.0.1:{closed}/"], "interval": "1s"},
            {"name": "wan", "module": "wan_icmp", "service": "wan", "targets": ["127.0.0.1"], "interval": "1s"},
        ],
    }, allow_unicode=True)


def _openmetrics(now: float) -> str:
    """An hour of synthetic series, every 30 s up to `now`: gauges hold, counters grow."""
    families: dict[str, tuple[str, list[tuple[dict[str, str], Callable[[int], float]]]]] = {}

    def add(name: str, kind: str, labels: dict[str, str], value: Callable[[int], float] | float) -> None:
        fn = value if callable(value) else (lambda _i, v=value: float(v))
        families.setdefault(name, (kind, []))[1].append((labels, fn))

    office = {**OFFICE, "check": "office-checks", "module": "m", "service": "portal", "target": "https://tamxuan1.example"}
    office.pop("district")
    district = {**DISTRICT_OFFICE, "check": "portal", "module": "portal", "service": "portal",
                "target": "https://nuithanh.example"}
    for labels in (office, district):
        portal = {**labels, "module": "portal", "check": "portal"}
        for item, present in (("van_ban", 1), ("thu_tuc_hanh_chinh", 1), ("lien_he", 0)):
            add("egov_portal_item_present", "gauge", {**portal, "item": item}, present)
        add("egov_portal_last_update_timestamp_seconds", "gauge", portal, now - 3 * 86400)
        add("egov_portal_broken_links", "gauge", portal, 2)
        add("egov_portal_pages_crawled", "gauge", portal, 40)
        add("egov_portal_page_bytes", "gauge", portal, 3_500_000)
        add("egov_portal_crawl_truncated", "gauge", portal, 0)
        for level, count in (("2", 1200), ("3", 40), ("4", 25), ("toan_trinh", 30), ("mot_phan", 60)):
            add("egov_public_services", "gauge", {**portal, "check": "catalogue", "service_level": level}, count)
        add("probe_ssl_earliest_cert_expiry", "gauge", portal, now + 10 * 86400)
        mail = {**labels, "check": "mail-rt", "module": "mail_roundtrip", "service": "mail",
                "target": "mail.example"}
        add("egov_mail_roundtrip_success", "gauge", mail, 1)
        add("egov_mail_roundtrip_delivery_seconds", "gauge", mail, 4.2)
        for step in ("connect", "starttls", "auth", "submit", "imap_seen"):
            add("egov_mail_step_duration_seconds", "gauge", {**mail, "step": step}, 0.3)
        add("egov_mail_failed_step_info", "gauge", {**mail, "check": "mail-imap", "step": "auth"}, 1)
        router = {**labels, "check": "router", "module": "if_mib", "service": "wan", "target": "udp://10.49.20.1"}
        for index, name, oper, admin in (("1", "wan0", 2, 1), ("2", "lan0", 1, 1)):
            iface = {**router, "ifIndex": index, "ifName": name, "ifAlias": name.upper(), "ifDescr": name}
            add("ifOperStatus", "gauge", iface, oper)
            add("ifAdminStatus", "gauge", iface, admin)
            add("ifHCInOctets", "unknown", iface, lambda i: 1e6 * i)  # snmp_exporter's counter has no _total
            add("egov_interface_state_changes", "counter", iface, lambda i: i // 10)
            for direction in ("in", "out"):
                add("egov_interface_utilization_ratio", "gauge", {**iface, "direction": direction}, 0.25)
        agent = {key: labels[key] for key in ("org_id", "level")} | {"destination": "central"}
        add("egov_agent_remote_write_queue_oldest_sample_age_seconds", "gauge", agent, 120)
        add("egov_agent_remote_write_samples_dropped", "counter", {**agent, "reason": "queue_full"}, lambda i: 10 * i)
        add("egov_agent_remote_write_samples_failed", "counter", {**agent, "reason": "http_400"}, lambda i: i)
    add("probe_success", "gauge", district, 1)
    maillog = {**PROVINCE, "check": "maillog", "module": "maillog", "service": "mail", "target": "/var/log/mail.log"}
    for agency, accounts in ((OFFICE["org_id"], 25), (DISTRICT_OFFICE["org_id"], 60)):
        add("egov_mail_accounts", "gauge", {**maillog, "agency": agency}, accounts)
        for window, share in (("1d", 0.5), ("7d", 0.8), ("30d", 0.92)):
            add("egov_mail_active_accounts", "gauge", {**maillog, "agency": agency, "window": window},
                round(accounts * share))
            for activity in ("sent", "read"):
                add("egov_mail_active_accounts_by_activity", "gauge",
                    {**maillog, "agency": agency, "window": window, "activity": activity}, round(accounts * share))
    add("postfix_smtpd_messages_processed", "counter", {**maillog, "sasl_method": "PLAIN"}, lambda i: 5 * i)
    add("postfix_smtpd_messages_rejected", "counter", {**maillog, "code": "554"}, lambda i: i)
    add("egov_mail_deliveries", "counter", {**maillog, "status": "sent"}, lambda i: 7 * i)
    for result in ("parsed", "ignored"):
        add("egov_mail_log_lines", "counter", {**maillog, "result": result}, lambda i: 30 * i)
    sql = {**PROVINCE, "check": "dms-sql", "module": "sql_dms", "service": "dms", "target": "dms"}
    onestop = {**sql, "check": "onestop-sql", "service": "onestop", "target": "onestop"}
    register = {**PROVINCE, "check": "register", "module": "register", "service": "other", "target": "registers.xlsx"}
    for agency in (OFFICE["org_id"], DISTRICT_OFFICE["org_id"]):
        for month in ("2026-09", "2026-10"):
            add("egov_dms_documents", "gauge", {**sql, "agency": agency, "month": month, "channel": "electronic"}, 80)
            add("egov_dms_documents", "gauge", {**sql, "agency": agency, "month": month, "channel": "paper"}, 20)
            add("egov_dms_documents_signed", "gauge", {**sql, "agency": agency, "month": month}, 70)
            for channel, count in (("online", 50), ("direct", 40), ("postal", 10)):
                add("egov_onestop_dossiers", "gauge", {**onestop, "agency": agency, "month": month, "channel": channel},
                    count)
            for timeliness, count in (("early", 30), ("on_time", 60), ("late", 5)):
                add("egov_onestop_dossiers_completed", "gauge",
                    {**onestop, "agency": agency, "month": month, "timeliness": timeliness}, count)
        add("egov_register_iso9001_certified", "gauge", {**register, "agency": agency}, 1)
        add("egov_register_satisfaction_ratio", "gauge", {**register, "agency": agency, "survey": "2026"}, 0.93)
        add("egov_register_index766_score", "gauge", {**register, "agency": agency}, 78.5)

    start = int(now) - 3600
    lines = []
    for name, (kind, series) in families.items():
        lines.append(f"# TYPE {name} {kind}")
        sample = f"{name}_total" if kind == "counter" else name  # OpenMetrics counters end in _total
        for labels, fn in series:
            text = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
            lines.extend(f"{sample}{{{text}}} {fn(i)} {start + 30 * i}" for i in range(121))
    return "\n".join(lines) + "\n# EOF\n"
