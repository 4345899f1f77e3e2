"""The snmp kind against Debian's snmpd on loopback (v2c and the v3 user matrix), and side by side with
snmp_exporter 0.21 on the same snmpd inside a network namespace with a switch-sized interface table."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.blackbox import parse_samples, samples_of
from fakes.snmp import COMMUNITY, USERS, Snmpd, SnmpExporter, namespace, ns_prefix
from testlib import REPO

from agent.errors import Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import snmp
from collectors.snmp import SnmpSettings

pytestmark = pytest.mark.slow
AGENT_LABELS = ("check", "module", "service", "target", "org_id", "level")


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpd]:
    server = Snmpd(tmp_path_factory.mktemp("snmpd")).start()
    yield server
    server.stop()


async def probe(settings: dict[str, Any], target: str, module_timeout: float = 5.0) -> ProbeResult:
    """One run through the real runner."""
    return await run_job(Job("c", target, "m", "wan", 60.0, module_timeout, snmp.SPEC,
                             SnmpSettings.model_validate(settings)))


def v3_auth(tmp_path: Path, user: str, auth: str | None, password: str, priv: str | None = None,
            priv_password: str = "") -> dict[str, Any]:
    """A v3 auth block with the passwords in files, as a config would give them."""
    (tmp_path / f"{user}.auth").write_text(password, encoding="utf-8")
    block: dict[str, Any] = {"version": 3, "username": user, "security_level": "authPriv" if priv else "authNoPriv",
                             "auth_protocol": auth, "password": {"file": str(tmp_path / f"{user}.auth")}}
    if priv:
        (tmp_path / f"{user}.priv").write_text(priv_password, encoding="utf-8")
        block |= {"priv_protocol": priv, "priv_password": {"file": str(tmp_path / f"{user}.priv")}}
    return block


async def test_v2c_if_mib_and_system(snmpd: Snmpd) -> None:
    result = await probe({"include": ["if_mib", "system"], "auth": {"community": COMMUNITY}}, snmpd.target)
    assert result.success, result.error
    got = samples_of(result.samples)
    assert got['sysName{sysName="testbed-snmpd"}'] == 1
    assert got['sysLocation{sysLocation="testbed-rack-1"}'] == 1
    interfaces = int(snmpd.snmpget("1.3.6.1.2.1.2.1.0").stdout.split()[-1])
    assert got["ifNumber"] == interfaces
    assert got['ifType_info{ifAlias="",ifDescr="lo",ifIndex="1",ifName="lo",ifType="softwareLoopback"}'] == 1
    assert got["snmp_scrape_packets_retried"] == 0 and got["snmp_scrape_pdus_returned"] > 40 * interfaces


async def test_v1_walks_with_getnext_to_the_same_result(snmpd: Snmpd) -> None:
    v2 = await probe({"include": ["if_mib"], "auth": {"community": COMMUNITY}}, snmpd.target)
    v1 = await probe({"include": ["if_mib"], "auth": {"version": 1, "community": COMMUNITY}}, snmpd.target)
    assert v1.success, v1.error
    got_v1, got_v2 = samples_of(v1.samples), samples_of(v2.samples)
    # v1 cannot carry Counter64: snmpd leaves the ifHC* columns out of v1 answers, and nothing else
    wide = {k for k in got_v2 if k.startswith("ifHC")}
    assert wide and not {k for k in got_v1 if k.startswith("ifHC")}
    assert got_v1["snmp_scrape_pdus_returned"] == got_v2["snmp_scrape_pdus_returned"] - len(wide)
    steady = ("ifType_info{", "ifMtu{", "ifSpeed{", "ifPhysAddress{", "ifAdminStatus{", "ifHighSpeed{")
    narrow = {k for k in got_v2 if k.startswith(steady)}  # the host's own interfaces carry traffic meanwhile
    assert {k: got_v1[k] for k in narrow} == {k: got_v2[k] for k in narrow}
    assert got_v1["snmp_scrape_packets_sent"] > got_v2["snmp_scrape_packets_sent"] * 10


@pytest.mark.parametrize(("user", "_a", "password", "_p", "priv_password", "auth", "priv"), USERS,
                         ids=[f"{u[5]}/{u[6] or 'noPriv'}" for u in USERS])
async def test_v3_users(snmpd: Snmpd, tmp_path: Path, user: str, _a: str, password: str, _p: str,
                        priv_password: str, auth: str, priv: str | None) -> None:
    result = await probe({"include": ["system"], "auth": v3_auth(tmp_path, user, auth, password, priv,
                                                                 priv_password)}, snmpd.target)
    assert result.success, result.error
    assert samples_of(result.samples)['sysName{sysName="testbed-snmpd"}'] == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"password": "wrong-auth-password"}, "wrong_digest", id="wrong auth password"),
        pytest.param({"auth": "SHA256"}, "wrong_digest", id="wrong auth protocol"),
        pytest.param({"user": "nobody"}, "unknown_user_name", id="unknown user"),
        pytest.param({"priv_password": "wrong-priv-password"}, "decryption_error", id="wrong priv password"),
        pytest.param({"priv": "AES256C"}, "decryption_error", id="Reeder where the device uses Blumenthal"),
        pytest.param({"priv": None}, "authorization_error", id="authNoPriv for an authPriv user"),
    ],
)
async def test_v3_refusals_are_auth_failed(snmpd: Snmpd, tmp_path: Path, change: dict[str, Any],
                                           reason: str) -> None:
    params = {"user": "ushaaes256", "auth": "SHA", "password": "authpass-shaaes256", "priv": "AES256",
              "priv_password": "privpass-shaaes256"} | change
    auth = v3_auth(tmp_path, params["user"], params["auth"], params["password"], params["priv"],
                   params["priv_password"])
    started = time.monotonic()
    result = await probe({"include": ["system"], "auth": auth, "timeout": "500ms", "retries": 1}, snmpd.target)
    assert result.outcome is Outcome.AUTH_FAILED, result.error
    assert result.error.endswith(f"[{reason}]"), result.error
    assert time.monotonic() - started < 3
    assert "privpass" not in result.error and "authpass" not in result.error


async def test_wrong_community_times_out_within_the_bound(snmpd: Snmpd) -> None:
    started = time.monotonic()
    result = await probe({"auth": {"community": "S3CR3T-community"}, "timeout": "200ms", "retries": 2},
                         snmpd.target)
    assert result.outcome is Outcome.TIMEOUT
    assert 0.6 <= time.monotonic() - started < 1.0
    assert "wrong community" in result.error
    assert "S3CR3T" not in result.error + "".join(line.message for line in result.lines)
    assert samples_of(result.samples)["snmp_scrape_packets_sent"] == 3


async def test_engine_restart_is_followed(tmp_path: Path) -> None:
    server = Snmpd(tmp_path / "restarting").start()
    try:
        settings = {"include": ["system"], "auth": v3_auth(tmp_path, "usha", "SHA", "authpass-sha1", "AES",
                                                           "privpass-sha1")}
        first = await probe(settings, server.target)
        assert first.success, first.error
        server.stop()
        server.start()  # same persistent dir: same engine id, engine boots + 1, engine time from 0
        second = await probe(settings, server.target)
        assert second.success, second.error
        assert any("not_in_time_window" in line.message for line in second.lines)
    finally:
        server.stop()


def test_probe_command_needs_no_config(snmpd: Snmpd) -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "probe", "--module", "if_mib", snmpd.target],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert 'ifOperStatus{ifAlias="",ifDescr="lo",ifIndex="1",ifName="lo",' in done.stdout
    assert "\nsnmp_scrape_pdus_returned{" in done.stdout


def test_same_metrics_as_snmp_exporter(tmp_path: Path) -> None:
    """Names, label sets and values of if_mib match snmp_exporter 0.21's for a 40-interface table.

    Everything runs inside the namespace (its loopback is not the host's). Counters of `lo` move with the
    SNMP traffic itself and sysUpTime with time, so those values are compared loosely.
    """
    with namespace(interfaces=40) as netns:
        server = Snmpd(tmp_path, netns=netns).start()
        exporter = SnmpExporter(tmp_path, netns=netns).start()
        try:
            theirs_text = exporter.scrape(f"127.0.0.1:{server.port}")
            done = subprocess.run([*ns_prefix(netns), sys.executable, "-m", "agent", "probe", "--config",
                                   str(_config(tmp_path)), "--module", "if_mib_test", server.target],
                                  capture_output=True, text=True, timeout=60, cwd=REPO)
            assert done.returncode == 0, done.stderr
        finally:
            exporter.stop()
            server.stop()
    theirs = parse_samples(theirs_text.splitlines())
    ours = parse_samples(done.stdout.splitlines(), drop_labels=AGENT_LABELS)
    device = {k for k in theirs if not k.startswith("snmp_")}
    assert len(device) == 41 * 37 + 2  # lo and 40 veth ends; 37 per-interface metrics, sysUpTime, ifNumber
    # Same names, label sets, values and TYPE lines (counters such as ifHCInOctets without _total, as theirs).
    ours_device = {k for k in ours if not k.startswith(("snmp_", "probe_", "egov_"))}
    assert ours_device == device
    moving = [k for k in device if 'ifDescr="lo"' in k or k.startswith("sysUpTime")]
    assert len(moving) < 40
    assert {k: ours[k] for k in device - set(moving)} == {k: theirs[k] for k in device - set(moving)}
    for key in ("snmp_scrape_pdus_returned", "snmp_scrape_packets_sent", "snmp_scrape_packets_retried"):
        assert ours[key] == theirs[key], key
    assert _types(done.stdout) == _types(theirs_text)
    assert {n for n, t in _types(theirs_text).items() if t == "counter"} >= {"ifHCInOctets", "ifInErrors"}


def _config(directory: Path) -> Path:
    path = directory / "agent.yaml"
    path.write_text(
        "office: {org_id: 000.00.20.H49, name: test, level: province}\n"
        f"modules:\n  if_mib_test: {{kind: snmp, snmp: {{include: [if_mib], auth: {{community: {COMMUNITY}}}}}}}\n",
        encoding="utf-8")
    return path


def _types(text: str) -> dict[str, str]:
    return {line.split()[2]: line.split()[3] for line in text.splitlines()
            if line.startswith("# TYPE ") and not line.split()[2].startswith(("snmp_", "probe_", "egov_"))}
