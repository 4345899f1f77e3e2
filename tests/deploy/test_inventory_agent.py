"""A config generated from the inventory runs: the agent exports egov_office_info from it and reloads on SIGHUP
(the unit's ExecReload) when the inventory changes and the config is generated again."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from testlib import wait_for

from agent.inventory import load_inventory
from agent.inventory_generate import generate

INVENTORY = """\
hierarchies:
  - {name: qn-2012, levels: [province, district, commune], until: 2025-06-30}
  - {name: dn-2025, levels: [city, commune], from: 2025-07-01}
offices:
  - {org_id: 000.00.00.H49, name: UBND tỉnh Quảng Nam, level: province, hierarchy: qn-2012, admin_code: "49"}
  - {org_id: 000.00.37.H49, name: UBND huyện Núi Thành, level: district, parent_id: 000.00.00.H49,
     hierarchy: qn-2012, admin_code: "517"}
  - {org_id: 000.02.37.H49, name: UBND xã Tam Xuân 1, level: commune, parent_id: 000.00.37.H49, hierarchy: qn-2012,
     wan_gateway: 127.0.0.1, services: [wan]}
"""

# Loopback only: ICMP to the office's gateway (127.0.0.1 here) and the host collector.
TEMPLATE = """\
modules:
  host_fast: {kind: host, timeout: 900ms}
checks:
  - {name: host, module: host_fast, service: host, targets: [localhost], interval: 1s}
  - {name: wan-gateway, module: icmp, service: wan, targets: ["${wan_gateway}"], interval: 30s}
"""


def _generate(tmp_path: Path, inventory_text: str) -> str:
    path = tmp_path / "inventory.yaml"
    path.write_text(inventory_text, encoding="utf-8")
    templates = tmp_path / "templates"
    templates.mkdir(exist_ok=True)
    for level in ("province", "district", "commune"):
        (templates / f"{level}.yaml").write_text(TEMPLATE, encoding="utf-8")
    generate(load_inventory(str(path)), tmp_path / "out", templates)
    return (tmp_path / "out/agents/000.02.37.H49.yaml").read_text(encoding="utf-8")


def _office_info(text: str) -> list[dict[str, str]]:
    return [sample.labels for family in text_string_to_metric_families(text) if family.name == "egov_office_info"
            for sample in family.samples]


@pytest.mark.slow  # starts the agent
def test_generated_config_exports_the_office_and_reloads(start_agent, tmp_path: Path) -> None:
    agent = start_agent(_generate(tmp_path, INVENTORY))
    expected = {"org_id": "000.02.37.H49", "name": "UBND xã Tam Xuân 1", "level": "commune",
                "parent_id": "000.00.37.H49", "hierarchy": "qn-2012", "admin_code": ""}
    assert _office_info(agent.metrics()) == [expected]
    wait_for(lambda: 'probe_success{check="host"' in agent.metrics(), timeout=20)
    assert 'org_id="000.02.37.H49"' in agent.metrics().split('probe_success{check="host"', 1)[1].split("\n", 1)[0]

    renamed = INVENTORY.replace("UBND xã Tam Xuân 1, level: commune", "UBND xã Tam Xuân, level: commune")
    agent.config_path.write_text(_generate(tmp_path, renamed), encoding="utf-8")
    agent.process.send_signal(signal.SIGHUP)  # what `systemctl reload egov-agent` sends
    wait_for(lambda: _office_info(agent.metrics()) == [{**expected, "name": "UBND xã Tam Xuân"}], timeout=20)
    assert agent.stop() == 0
