"""The snmp kind beyond if_mib: the device catalogue (vs snmp_exporter on real snmpd), user-defined metric names,
lookup tables cached between runs, and one request in flight per device across checks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes.blackbox import parse_samples, samples_of
from fakes.snmp import COMMUNITY, ScriptedAgent, Snmpd, SnmpExporter, if_table, mib_agent
from testlib import REPO

from agent.runner import Job, ProbeResult, run_job
from collectors import snmp
from collectors.snmp import CATALOGUE, SnmpSettings

IF_NAME = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)
IF_HC_IN = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6)
MEM_TOTAL_REAL = "1.3.6.1.4.1.2021.4.5"  # UCD-SNMP-MIB::memTotalReal, which net-snmp serves


async def probe(settings: dict[str, Any], target: str, check: str = "c", module_timeout: float = 5.0) -> ProbeResult:
    """One run through the real runner."""
    return await run_job(Job(check, target, "m", "wan", 60.0, module_timeout, snmp.SPEC,
                             SnmpSettings.model_validate(settings)))


def test_every_catalogue_module_is_a_builtin_module() -> None:
    for name in ("if_mib", "system", "host_resources", "entity_sensor", "cisco_cpu_memory", "juniper_operating",
                 "huawei_entity", "fortigate_system"):
        assert name in CATALOGUE
        assert snmp.SPEC.builtin_modules[name]["snmp"] == {"include": [name]}
        plan = SnmpSettings.model_validate({"include": [name]}).plan()
        assert plan.metrics and (plan.walk or plan.get)


@pytest.mark.slow
def test_host_resources_matches_snmp_exporter(tmp_path: Path) -> None:
    """The same names, label sets and steady values as snmp_exporter 0.21 given the same module."""
    server = Snmpd(tmp_path / "snmpd").start()
    exporter = SnmpExporter(tmp_path)
    module = {**CATALOGUE["host_resources"], "auth": {"community": COMMUNITY}}
    exporter.config.write_text(yaml.safe_dump({"host_resources": module}), encoding="utf-8")
    exporter.start()
    try:
        theirs = parse_samples(exporter.scrape(f"127.0.0.1:{server.port}", "host_resources").splitlines())
        ours = samples_of(asyncio.run(probe({"include": ["host_resources"], "auth": {"community": COMMUNITY}},
                                            server.target)).samples)
    finally:
        exporter.stop()
        server.stop()
    device = {k for k in theirs if k.startswith("hr")}
    # (net-snmp fills hrProcessorLoad only after a minute of samples, so the CPU rows are not compared here)
    assert any(k.startswith("hrStorageSize{") for k in device) and "hrSystemProcesses" in device
    assert {k for k in ours if k.startswith("hr")} == device
    steady = [k for k in device if k.startswith(("hrStorageSize{", "hrStorageAllocationUnits{", "hrMemorySize"))]
    assert steady and {k: ours[k] for k in steady} == {k: theirs[k] for k in steady}


@pytest.mark.slow
def test_user_defined_metric_through_a_config_file(tmp_path: Path) -> None:
    """A metric the catalogue does not know, named in the config, exported with the value snmpget reads."""
    server = Snmpd(tmp_path / "snmpd").start()
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({
        "office": {"org_id": "000.00.20.H49", "name": "test", "level": "province"},
        "modules": {"ucd_memory": {"kind": "snmp", "snmp": {
            "auth": {"community": COMMUNITY}, "walk": ["1.3.6.1.4.1.2021.4"],
            "metrics": [{"name": "memTotalReal", "oid": MEM_TOTAL_REAL, "type": "gauge",
                         "help": "Total real memory, KiB"}]}}},
    }), encoding="utf-8")
    try:
        done = subprocess.run([sys.executable, "-m", "agent", "probe", "--config", str(config), "--module",
                               "ucd_memory", server.target], capture_output=True, text=True, timeout=60, cwd=REPO)
        expected = int(server.snmpget(MEM_TOTAL_REAL + ".0").stdout.split()[-1])
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert "# TYPE memTotalReal gauge" in done.stdout
    got = parse_samples(done.stdout.splitlines(), drop_labels=("check", "module", "service", "target", "org_id",
                                                               "level"))
    assert got["memTotalReal"] == expected > 0


def test_one_metric_name_with_two_meanings_is_refused(tmp_path: Path) -> None:
    def module(type_: str) -> dict[str, Any]:
        return {"kind": "snmp", "snmp": {"walk": ["1.3.6.1.4.1.2021.4"], "metrics": [
            {"name": "memTotalReal", "oid": MEM_TOTAL_REAL, "type": type_}]}}

    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"office": {"org_id": "x1", "name": "test", "level": "province"},
                                      "modules": {"a": module("gauge"), "b": module("counter")}}), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "agent", "check-config", str(config)], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert done.returncode == 1
    assert "modules.b" in done.stderr and "also declared by module 'a', as a gauge" in done.stderr, done.stderr


async def test_lookup_only_walks_are_cached_for_n_runs() -> None:
    agent = await ScriptedAgent(mib_agent(if_table(4))).start()
    settings = {"auth": {"community": "public"}, "walk": [".".join(map(str, IF_HC_IN)), ".".join(map(str, IF_NAME))],
                "lookup_cache_runs": 3, "metrics": [{
                    "name": "ifHCInOctets", "oid": ".".join(map(str, IF_HC_IN)), "type": "counter",
                    "indexes": [{"labelname": "ifIndex", "type": "gauge"}],
                    "lookups": [{"labels": ["ifIndex"], "labelname": "ifName", "oid": ".".join(map(str, IF_NAME)),
                                 "type": "DisplayString"}]}]}
    walked_names = []
    try:
        for _ in range(4):
            before = len(agent.requests)
            result = await probe(settings, agent.target)
            assert result.success, result.error
            walked_names.append(any(r.oids[0][:len(IF_NAME)] == IF_NAME for r in agent.requests[before:]))
            named = [k for k in samples_of(result.samples) if k.startswith("ifHCInOctets{")]
            assert len(named) == 4 and all('ifName="' in k and 'ifName=""' not in k for k in named), named
    finally:
        agent.close()
    assert walked_names == [True, False, False, True]


async def test_one_request_in_flight_per_device_across_checks() -> None:
    class Counting(ScriptedAgent):
        outstanding = 0
        most = 0

        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.outstanding += 1
            self.most = max(self.most, self.outstanding)
            super().datagram_received(data, addr)

        def _send(self, reply: bytes, addr: Any) -> None:
            self.outstanding -= 1
            super()._send(reply, addr)

    agent = await Counting(mib_agent(if_table(8)), delay=0.01).start()
    other = await Counting(mib_agent(if_table(8)), delay=0.01).start()
    try:
        settings = {"include": ["if_mib"], "auth": {"community": "public"}, "max_repetitions": 5}
        results = await asyncio.gather(probe(settings, agent.target, "a"), probe(settings, agent.target, "b"),
                                       probe(settings, other.target, "c"))
    finally:
        agent.close()
        other.close()
    assert all(r.success for r in results), [r.error for r in results]
    assert len(agent.requests) > 2 * len(other.requests) - 2  # both checks did poll the first device
    assert agent.most == 1 and other.most == 1


@pytest.mark.slow
def test_probe_command_takes_a_named_auth(tmp_path: Path) -> None:
    """`probe --auth NAME` applies the config's named auth, as a check's `auth:` does."""
    server = Snmpd(tmp_path / "snmpd").start()
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({
        "office": {"org_id": "000.00.20.H49", "name": "test", "level": "province"},
        "auths": {"right": {"community": COMMUNITY}, "wrong": {"community": "not-the-community"}},
        "modules": {"quick": {"kind": "snmp", "timeout": "2s",
                              "snmp": {"include": ["system"], "timeout": "500ms", "retries": 0}}},
    }), encoding="utf-8")

    def probe_with(auth: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent", "probe", "--config", str(config), "--auth", auth,
                               "--module", "quick", server.target], capture_output=True, text=True, timeout=60,
                              cwd=REPO)

    try:
        right, wrong, unknown = probe_with("right"), probe_with("wrong"), probe_with("nobody")
    finally:
        server.stop()
    assert right.returncode == 0, right.stderr
    assert 'sysName{' in right.stdout
    assert wrong.returncode == 1 and "sysName{" not in wrong.stdout
    assert unknown.returncode == 2 and "unknown auth 'nobody'" in unknown.stderr


def test_auth_priv_without_cryptography_is_a_clear_startup_error(tmp_path: Path) -> None:
    """In an interpreter where `cryptography` cannot be imported, authPriv is refused at load with the fix named."""
    (tmp_path / "auth.pass").write_text("authpass-sha256", encoding="utf-8")
    (tmp_path / "priv.pass").write_text("privpass-sha256", encoding="utf-8")
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({
        "office": {"org_id": "000.00.20.H49", "name": "test", "level": "province"},
        "auths": {"router": {"version": 3, "username": "mon", "security_level": "authPriv",
                             "auth_protocol": "SHA256", "password": {"file": str(tmp_path / "auth.pass")},
                             "priv_protocol": "AES", "priv_password": {"file": str(tmp_path / "priv.pass")}}},
    }), encoding="utf-8")
    blocked = ("import sys; sys.modules['cryptography'] = None; from agent.cli import main; "
               f"raise SystemExit(main(['check-config', {str(config)!r}]))")
    without = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60, cwd=REPO)
    with_it = subprocess.run([sys.executable, "-m", "agent", "check-config", str(config)], capture_output=True,
                             text=True, timeout=60, cwd=REPO)
    assert with_it.returncode == 0, with_it.stderr
    assert without.returncode == 1
    assert "auths.router" in without.stderr and "requires the 'cryptography' package" in without.stderr
    assert "Traceback" not in without.stderr


async def test_two_hundred_devices_in_parallel_leave_nothing_behind() -> None:
    """200 devices polled at once: all answer, the slowest run is far below the sum, no socket or task is left."""
    class Stamped(ScriptedAgent):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.stamps = [*getattr(self, "stamps", []), asyncio.get_running_loop().time()]
            super().datagram_received(data, addr)

    agents = [await Stamped(mib_agent(if_table(4)), delay=0.02).start() for _ in range(200)]
    fds_before = len(list(Path("/proc/self/fd").iterdir()))
    tasks_before = len(asyncio.all_tasks())
    try:
        results = await asyncio.gather(*(probe({"include": ["if_mib"], "auth": {"community": "public"}}, a.target,
                                               f"router-{i}") for i, a in enumerate(agents)))
        fds_after = len(list(Path("/proc/self/fd").iterdir()))
    finally:
        for agent in agents:
            agent.close()
    assert all(r.success for r in results), {r.error for r in results if not r.success}
    first_done = min(a.stamps[-1] for a in agents)
    assert all(a.stamps[0] < first_done for a in agents)  # in parallel: every device was asked before any finished
    assert fds_after == fds_before  # every run's socket closed (the 200 devices' own are still open here)
    assert len(asyncio.all_tasks()) == tasks_before


@pytest.mark.slow
def test_filters_keep_only_admin_up_interfaces(tmp_path: Path) -> None:
    """snmp_exporter's dynamic filter on ifAdminStatus: interfaces set down with `ip link` vanish from every table."""
    from fakes.snmp import namespace, ns_prefix, run_in

    with namespace(interfaces=4) as netns:
        run_in(netns, "ip", "link", "set", "ta1", "down")
        run_in(netns, "ip", "link", "set", "tb1", "down")
        links = run_in(netns, "ip", "-o", "link", "show").stdout.splitlines()
        admin_up = {line.split(": ")[1].split("@")[0] for line in links if "<" in line and
                    "UP" in line.split("<")[1].split(">")[0].split(",")}
        server = Snmpd(tmp_path / "snmpd", netns=netns).start()
        config = tmp_path / "agent.yaml"
        config.write_text(yaml.safe_dump({
            "office": {"org_id": "000.00.20.H49", "name": "test", "level": "province"},
            "modules": {"up_only": {"kind": "snmp", "snmp": {
                "include": ["if_mib"], "auth": {"community": COMMUNITY},
                "filters": [{"oid": "1.3.6.1.2.1.2.2.1.7", "values": ["1"],
                             "targets": ["1.3.6.1.2.1.2.2", "1.3.6.1.2.1.31.1.1"]}]}}},
        }), encoding="utf-8")
        try:
            done = subprocess.run([*ns_prefix(netns), sys.executable, "-m", "agent", "probe", "--config",
                                   str(config), "--module", "up_only", f"udp://127.0.0.1:{server.port}"],
                                  capture_output=True, text=True, timeout=60, cwd=REPO)
        finally:
            server.stop()
    assert done.returncode == 0, done.stderr
    got = parse_samples(done.stdout.splitlines())
    described = {key.split('ifDescr="')[1].split('"')[0] for key in got if key.startswith("ifOperStatus{")}
    assert admin_up == {"lo", "ta0", "tb0"}, done.stdout[:3000]
    assert described == admin_up, done.stdout[:3000]
    assert not any('ifDescr="ta1"' in key or 'ifName="tb1"' in key for key in got)
