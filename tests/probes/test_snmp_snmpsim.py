"""The device catalogue and walk safety against snmpsim's recorded devices: Cisco, Huawei, Juniper and FortiGate
CPU and memory, ENTITY-SENSOR-MIB sensors, a slow device and a huge table.

Expected values come from the recordings themselves, never from the agent's code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.snmpsim import COUNTER32, GAUGE32, INTEGER, OCTETS, Recording, Snmpsim, write_recording

from agent.errors import Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import snmp
from collectors.snmp import SnmpSettings

pytestmark = pytest.mark.slow
CPM, POOL = "1.3.6.1.4.1.9.9.109.1.1.1.1", "1.3.6.1.4.1.9.9.48.1.1.1"
HW, ENT_NAME = "1.3.6.1.4.1.2011.5.25.31.1.1.1.1", "1.3.6.1.2.1.47.1.1.1.1.7"
JNX, FGT, SENSOR = "1.3.6.1.4.1.2636.3.1.13.1", "1.3.6.1.4.1.12356.101.4.1", "1.3.6.1.2.1.99.1.1.1"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
HUGE_ROWS = 30_000

DEVICES: dict[str, Recording] = {
    "cisco": {SYS_NAME: (OCTETS, "core-router"), f"{CPM}.6.1": (GAUGE32, "7"), f"{CPM}.7.1": (GAUGE32, "12"),
              f"{CPM}.8.1": (GAUGE32, "9"), f"{POOL}.2.1": (OCTETS, "Processor"), f"{POOL}.2.2": (OCTETS, "I/O"),
              f"{POOL}.5.1": (GAUGE32, "123456789"), f"{POOL}.5.2": (GAUGE32, "2345678"),
              f"{POOL}.6.1": (GAUGE32, "876543210"), f"{POOL}.6.2": (GAUGE32, "9876543")},
    "huawei": {SYS_NAME: (OCTETS, "district-switch"), f"{ENT_NAME}.16842753": (OCTETS, "MPU Board 1"),
               f"{ENT_NAME}.16842754": (OCTETS, "LPU Board 2"), f"{HW}.5.16842753": (INTEGER, "23"),
               f"{HW}.5.16842754": (INTEGER, "4"), f"{HW}.7.16842753": (INTEGER, "61"),
               f"{HW}.7.16842754": (INTEGER, "38"), f"{HW}.11.16842753": (INTEGER, "44"),
               f"{HW}.11.16842754": (INTEGER, "39")},
    "juniper": {SYS_NAME: (OCTETS, "province-edge"), f"{JNX}.5.9.1.0.0": (OCTETS, "Routing Engine 0"),
                f"{JNX}.5.7.1.0.0": (OCTETS, "FPC: MPC7E @ 0/*/*"), f"{JNX}.7.9.1.0.0": (GAUGE32, "41"),
                f"{JNX}.7.7.1.0.0": (GAUGE32, "48"), f"{JNX}.8.9.1.0.0": (GAUGE32, "17"),
                f"{JNX}.8.7.1.0.0": (GAUGE32, "31"), f"{JNX}.11.9.1.0.0": (GAUGE32, "52"),
                f"{JNX}.11.7.1.0.0": (GAUGE32, "14")},
    "fortigate": {SYS_NAME: (OCTETS, "province-fw"), f"{FGT}.3.0": (GAUGE32, "27"), f"{FGT}.4.0": (GAUGE32, "64"),
                  f"{FGT}.8.0": (GAUGE32, "15321")},
    "sensors": {SYS_NAME: (OCTETS, "core-switch"), f"{ENT_NAME}.1001": (OCTETS, "CPU temperature"),
                f"{ENT_NAME}.1002": (OCTETS, "Fan 1"), f"{SENSOR}.1.1001": (INTEGER, "8"),
                f"{SENSOR}.1.1002": (INTEGER, "10"), f"{SENSOR}.2.1001": (INTEGER, "9"),
                f"{SENSOR}.2.1002": (INTEGER, "9"), f"{SENSOR}.3.1001": (INTEGER, "0"),
                f"{SENSOR}.3.1002": (INTEGER, "0"), f"{SENSOR}.4.1001": (INTEGER, "47"),
                f"{SENSOR}.4.1002": (INTEGER, "5280"), f"{SENSOR}.5.1001": (INTEGER, "1"),
                f"{SENSOR}.5.1002": (INTEGER, "1")},
    "slow": {SYS_NAME: (OCTETS, "commune-router"), "1.3.6.1.2.1.1.3.0": ("67:delay", "value=4242,wait=800")},
    "huge": {SYS_NAME: (OCTETS, "huge-table"),
             **{f"1.3.6.1.2.1.2.2.1.10.{i}": (COUNTER32, str(i * 7)) for i in range(1, HUGE_ROWS + 1)}},
}
EXPECTED = {
    "cisco_cpu_memory": ("cisco", {
        ("cpmCPUTotal5secRev", (("cpmCPUTotalIndex", "1"),)): 7,
        ("cpmCPUTotal1minRev", (("cpmCPUTotalIndex", "1"),)): 12,
        ("cpmCPUTotal5minRev", (("cpmCPUTotalIndex", "1"),)): 9,
        ("ciscoMemoryPoolUsed", (("ciscoMemoryPoolName", "Processor"), ("ciscoMemoryPoolType", "1"))): 123456789,
        ("ciscoMemoryPoolUsed", (("ciscoMemoryPoolName", "I/O"), ("ciscoMemoryPoolType", "2"))): 2345678,
        ("ciscoMemoryPoolFree", (("ciscoMemoryPoolName", "Processor"), ("ciscoMemoryPoolType", "1"))): 876543210,
        ("ciscoMemoryPoolFree", (("ciscoMemoryPoolName", "I/O"), ("ciscoMemoryPoolType", "2"))): 9876543}),
    "huawei_entity": ("huawei", {
        (name, (("entPhysicalIndex", index), ("entPhysicalName", board))): value
        for name, column in (("hwEntityCpuUsage", 5), ("hwEntityMemUsage", 7), ("hwEntityTemperature", 11))
        for index, board in (("16842753", "MPU Board 1"), ("16842754", "LPU Board 2"))
        for value in [int(DEVICES["huawei"][f"{HW}.{column}.{index}"][1])]}),
    "juniper_operating": ("juniper", {
        (name, (("jnxOperatingContentsIndex", index[0]), ("jnxOperatingDescr", descr), ("jnxOperatingL1Index", "1"),
                ("jnxOperatingL2Index", "0"), ("jnxOperatingL3Index", "0"))): value
        for name, column in (("jnxOperatingTemp", 7), ("jnxOperatingCPU", 8), ("jnxOperatingBuffer", 11))
        for index, descr in (("9", "Routing Engine 0"), ("7", "FPC: MPC7E @ 0/*/*"))
        for value in [int(DEVICES["juniper"][f"{JNX}.{column}.{index}.1.0.0"][1])]}),
    "fortigate_system": ("fortigate", {("fgSysCpuUsage", ()): 27, ("fgSysMemUsage", ()): 64,
                                       ("fgSysSesCount", ()): 15321}),
    "entity_sensor": ("sensors", {
        (name, (("entPhysicalIndex", index), ("entPhysicalName", sensor))): value
        for name, column in (("entPhySensorType", 1), ("entPhySensorScale", 2), ("entPhySensorPrecision", 3),
                             ("entPhySensorValue", 4), ("entPhySensorOperStatus", 5))
        for index, sensor in (("1001", "CPU temperature"), ("1002", "Fan 1"))
        for value in [int(DEVICES["sensors"][f"{SENSOR}.{column}.{index}"][1])]}),
}


@pytest.fixture(scope="module")
def snmpsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpsim]:
    server = Snmpsim(tmp_path_factory.mktemp("snmpsim"))
    for community, recording in DEVICES.items():
        write_recording(server.data / f"{community}.snmprec", recording)
    server.start("cisco")
    yield server
    server.stop()


async def probe(settings: dict[str, Any], target: str, module_timeout: float = 10.0) -> ProbeResult:
    """One run through the real runner."""
    return await run_job(Job("c", target, "m", "wan", 60.0, module_timeout, snmp.SPEC,
                             SnmpSettings.model_validate(settings)))


@pytest.mark.parametrize("module", sorted(EXPECTED))
async def test_vendor_modules_read_the_recorded_device(snmpsim: Snmpsim, module: str) -> None:
    community, expected = EXPECTED[module]
    result = await probe({"include": [module], "auth": {"community": community}}, snmpsim.target)
    assert result.success, result.error
    got = {(s.name, tuple(sorted(s.labels))): s.value for s in result.samples
           if not s.name.startswith(("snmp_", "probe_", "egov_"))}
    assert got == expected


async def test_slow_device_ends_within_the_deadline(snmpsim: Snmpsim) -> None:
    """snmpsim answers sysUpTime after 800 ms: per-request timeout 300 ms with one retry fails in time; a patient
    module gets the value."""
    settings = {"get": ["1.3.6.1.2.1.1.3.0"], "auth": {"community": "slow"},
                "metrics": [{"name": "sysUpTime", "oid": "1.3.6.1.2.1.1.3", "type": "gauge"}]}
    started = time.monotonic()
    hasty = await probe({**settings, "timeout": "300ms", "retries": 1}, snmpsim.target, module_timeout=2)
    elapsed = time.monotonic() - started
    patient = await probe({**settings, "timeout": "2s", "retries": 0}, snmpsim.target, module_timeout=3)
    assert hasty.outcome is Outcome.TIMEOUT and elapsed < 2.0, (hasty.error, elapsed)
    assert "2 attempts" in hasty.error
    assert patient.success, patient.error
    assert {s.name: s.value for s in patient.samples}["sysUpTime"] == 4242


async def test_huge_table_is_walked_whole_or_capped(snmpsim: Snmpsim) -> None:
    walk = {"walk": ["1.3.6.1.2.1.2.2.1.10"], "auth": {"community": "huge"},
            "metrics": [{"name": "ifInOctets", "oid": "1.3.6.1.2.1.2.2.1.10", "type": "counter",
                         "indexes": [{"labelname": "ifIndex", "type": "gauge"}]}]}
    whole = await probe({**walk, "max_repetitions": 50}, snmpsim.target, module_timeout=60)
    capped = await probe({**walk, "max_rows": 5000}, snmpsim.target, module_timeout=60)
    assert whole.success, whole.error
    values = {dict(s.labels)["ifIndex"]: s.value for s in whole.samples if s.name == "ifInOctets"}
    assert len(values) == HUGE_ROWS and values["12345"] == 12345 * 7
    assert capped.outcome is Outcome.PROTOCOL_ERROR and "max_rows=5000" in capped.error
    sent = {s.name: s.value for s in capped.samples}["snmp_scrape_packets_sent"]
    assert sent <= 5000 / 25 + 2  # stopped at the cap, not after the whole table
