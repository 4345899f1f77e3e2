"""End to end: real agents -> real Prometheus with the production rules (for: minutes turned into seconds) -> real
Alertmanager with the production routes and inhibitions (receivers turned into a local webhook).

Three commune offices. Office A (district 15) probes a local portal directly. Offices B1 and B2 (district 16) reach
the provincial network through one FaultProxy (their district's WAN link): their WAN checks (TCP) and portal checks
go through it. (a) stopping A's portal brings EgovServiceDown to A's district and the provincial team no sooner than
its `for:`; (b) cutting the district's link brings EgovOfficeUnreachable for B1 and B2 in one notification per
receiver, and nothing else about them: their EgovServiceDown fires in Prometheus but Alertmanager inhibits it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes.fault_proxy import FaultProxy
from fakes.okserver import OkServer
from fakes.promstack import (
    DEPLOY,
    Prometheus,
    Server,
    inventory_rules,
    scaled_rules,
    start_alertmanager,
    start_prometheus,
)
from fakes.webhook import WebhookReceiver
from testlib import AgentProcess, wait_for

pytestmark = pytest.mark.slow

A = {"org_id": "000.00.20.H49", "name": "UBND xã Tam Xuân 1", "level": "commune", "parent_id": "000.00.15.H49",
     "district": "000.00.15.H49", "hierarchy": "qn-2012"}
B1 = {"org_id": "000.00.31.H49", "name": "UBND xã Tam Thăng", "level": "commune", "parent_id": "000.00.16.H49",
      "district": "000.00.16.H49", "hierarchy": "qn-2012"}
B2 = {"org_id": "000.00.32.H49", "name": "UBND xã Tam Phú", "level": "commune", "parent_id": "000.00.16.H49",
      "district": "000.00.16.H49", "hierarchy": "qn-2012"}
CUT = {B1["org_id"], B2["org_id"]}
SERVICE_DOWN_FOR = 5.0  # production 5m, scaled to seconds
UNREACHABLE_FOR = 2.0  # production 2m


@pytest.fixture
def stack(tmp_path: Path, start_agent: Callable[..., AgentProcess]) -> Iterator[dict[str, Any]]:
    portal_a, portal_b = OkServer(), OkServer()
    proxy = FaultProxy(portal_b.port).start()
    hook = WebhookReceiver().start()
    servers: list[Server] = []
    try:
        agent_a = start_agent(_agent_config(A, tmp_path / "state-a", f"http://127.0.0.1:{portal_a.port}/",
                                            f"127.0.0.1:{portal_b.port}"))
        agents = {agent_a.address: A}
        for office in (B1, B2):
            agent = start_agent(_agent_config(office, tmp_path / f"state-{office['org_id']}", f"{proxy.url}/",
                                              f"127.0.0.1:{proxy.port}"))
            agents[agent.address] = office
        alertmanager = start_alertmanager(tmp_path / "alertmanager", _alertmanager_config(hook.url))
        servers.append(alertmanager)
        prometheus = start_prometheus(tmp_path / "prometheus", _prometheus_config(
            tmp_path / "prometheus", alertmanager.address, agents))
        servers.append(prometheus)
        yield {"prometheus": prometheus, "alertmanager": alertmanager, "hook": hook, "proxy": proxy,
               "portal_a": portal_a}
    finally:
        for server in reversed(servers):
            server.stop()
        hook.stop()
        proxy.stop()
        portal_a.stop()
        portal_b.stop()


def test_service_down_notified_and_wan_cut_inhibits_service_alerts(stack: dict[str, Any]) -> None:
    prometheus: Prometheus = stack["prometheus"]
    alertmanager: Server = stack["alertmanager"]
    hook: WebhookReceiver = stack["hook"]
    started = time.monotonic()

    # Every office scraped and every check up.
    def all_up() -> bool:
        rows = prometheus.query('org_id_service:probe_success:max == 1')
        return len(rows) == 6
    wait_for(all_up, timeout=30, interval=0.5)
    assert not _firing(hook, "EgovServiceDown", A["org_id"])

    # (a) A's portal stops: EgovServiceDown for A, no sooner than its for:, to A's district and the province.
    cut_a = time.monotonic()
    stack["portal_a"].stop()
    arrivals = wait_for(lambda: _firing(hook, "EgovServiceDown", A["org_id"]), timeout=SERVICE_DOWN_FOR + 20)
    first_at, _, alert = arrivals[0]  # type: ignore[index]
    assert SERVICE_DOWN_FOR <= first_at - cut_a <= SERVICE_DOWN_FOR + 15, first_at - cut_a
    assert alert["labels"]["name"] == A["name"] and alert["labels"]["district"] == A["district"]
    assert alert["labels"]["service"] == "portal" and alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"].startswith(f"portal down for {A['name']} (commune)")
    wait_for(lambda: {receiver for _, receiver, _ in _firing(hook, "EgovServiceDown", A["org_id"])}
             == {"district-15-nuithanh", "province-it"}, timeout=10)

    # (b) District 16's link is cut: B1's and B2's WAN and portal checks fail. The district's IT officer and the
    # provincial team each get one notification naming both offices as unreachable, and nothing else about them.
    cut_b = time.monotonic()
    stack["proxy"].set_mode("refuse")

    def grouped() -> list[tuple[float, dict[str, Any]]]:
        return [(at, body) for at, body in hook.notifications
                if body["groupLabels"] == {"district": B1["district"], "alertname": "EgovOfficeUnreachable"}]
    wait_for(lambda: {body["receiver"] for _, body in grouped()} == {"district-16-tamky", "province-it"},
             timeout=UNREACHABLE_FOR + 20)
    for at, body in grouped():
        assert at - cut_b >= UNREACHABLE_FOR
        assert {alert["labels"]["org_id"] for alert in body["alerts"]} == CUT, body
        assert {alert["labels"]["name"] for alert in body["alerts"]} == {B1["name"], B2["name"]}

    # Their service alerts do fire in Prometheus and reach Alertmanager, which holds them back.
    def service_down_firing() -> bool:
        return {a["labels"]["org_id"] for a in prometheus.alerts()
                if a["labels"]["alertname"] == "EgovServiceDown" and a["state"] == "firing"} >= CUT
    wait_for(service_down_firing, timeout=SERVICE_DOWN_FOR + 15)

    def inhibited() -> bool:
        alerts = alertmanager.get_json("/api/v2/alerts", filter='alertname="EgovServiceDown"')
        down = [a for a in alerts if a["labels"]["org_id"] in CUT]
        return len(down) == 2 and all(a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]
                                      for a in down)
    wait_for(inhibited, timeout=10)
    time.sleep(3)  # a few group_intervals: a notification that was not held back would have arrived by now
    about_cut = {alert["labels"]["alertname"] for _, _, alert in hook.alerts() if alert["labels"].get("org_id") in CUT}
    assert about_cut == {"EgovOfficeUnreachable"}, about_cut
    assert time.monotonic() - started < 90


def _firing(hook: WebhookReceiver, alertname: str, org_id: str) -> list[tuple[float, str, dict[str, Any]]]:
    return [(at, receiver, alert) for at, receiver, alert in hook.alerts("firing")
            if alert["labels"].get("alertname") == alertname and alert["labels"].get("org_id") == org_id]


def _agent_config(office: dict[str, str], state_dir: Path, portal_url: str, wan_target: str) -> str:
    identity = {key: office[key] for key in ("org_id", "name", "level", "parent_id")}
    return yaml.safe_dump({
        "office": identity,
        "agent": {"state_dir": str(state_dir)},
        "modules": {"http_fast": {"kind": "http", "timeout": "900ms"}, "tcp_fast": {"kind": "tcp", "timeout": "900ms"}},
        "checks": [
            {"name": "portal", "module": "http_fast", "service": "portal", "targets": [portal_url], "interval": "1s"},
            {"name": "wan", "module": "tcp_fast", "service": "wan", "targets": [wan_target], "interval": "1s"},
        ],
    }, allow_unicode=True)


def _prometheus_config(workdir: Path, alertmanager: str, agents: dict[str, dict[str, str]]) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "inventory.rules.yml").write_text(inventory_rules(list(agents.values())), encoding="utf-8")
    for name in ("egov-records.yml", "egov-alerts.yml"):
        scaled_rules(DEPLOY / "prometheus" / "rules" / name, workdir / name)
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["inventory.rules.yml", "egov-records.yml", "egov-alerts.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{
            "job_name": "egov-agent", "honor_labels": True,
            "static_configs": [{"targets": [address], "labels": {"org_id": office["org_id"], "level": office["level"]}}
                               for address, office in agents.items()],
        }],
    }


def _alertmanager_config(url: str) -> str:
    """The production routes and inhibitions; every receiver posts to the webhook; no waiting before a group."""
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))
    config.pop("global", None)
    config.pop("templates", None)
    config["receivers"] = [{"name": receiver["name"], "webhook_configs": [{"url": url, "send_resolved": True}]}
                           for receiver in config["receivers"]]
    # group_wait 1s: alerts of one evaluation (a district's offices) land in one notification
    config["route"].update({"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"})
    return json.dumps(config, indent=2)
