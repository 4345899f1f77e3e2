"""Built-in SNMP modules for host resources, sensors, and the CPU and memory of routers offices buy.

Names, OIDs, types, indexes and lookups as snmp_exporter's snmp.yml has them (hrSystem, hrStorage, hrDevice,
cisco_device, juniper), cut to what a WAN dashboard needs; ENTITY-SENSOR-MIB (RFC 3433), Huawei's
HUAWEI-ENTITY-EXTENT-MIB and Fortinet's FORTINET-FORTIGATE-MIB, which snmp_exporter does not ship, from the MIBs.
MikroTik RouterOS, pfSense and most Linux-based routers report CPU and memory through HOST-RESOURCES-MIB.
"""

from __future__ import annotations

from typing import Any


def _m(name: str, oid: str, type_: str, help_: str, indexes: list[str] | None = None,
       lookups: list[tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """One metric in snmp.yml form; each lookup is (label name, OID, type) keyed by all the indexes."""
    metric: dict[str, Any] = {"name": name, "oid": oid, "type": type_, "help": f"{help_} - {oid}"}
    if indexes:
        metric["indexes"] = [{"labelname": label, "type": "gauge"} for label in indexes]
    if lookups:
        metric["lookups"] = [{"labels": list(indexes or []), "labelname": label, "oid": lookup_oid, "type": kind}
                             for label, lookup_oid, kind in lookups]
    return metric


_HR = "1.3.6.1.2.1.25"
_STORAGE = [f"{_HR}.2.3.1.3", f"{_HR}.2.3.1.2"]
_STORAGE_LOOKUPS = [("hrStorageDescr", _STORAGE[0], "DisplayString"), ("hrStorageType", _STORAGE[1], "OctetString")]
_DEVICE_LOOKUPS = [("hrDeviceDescr", f"{_HR}.3.2.1.3", "DisplayString"),
                   ("hrDeviceType", f"{_HR}.3.2.1.2", "OctetString")]
_ENT_NAME = "1.3.6.1.2.1.47.1.1.1.1.7"
_ENT_LOOKUP = [("entPhysicalName", _ENT_NAME, "DisplayString")]
_CPM = "1.3.6.1.4.1.9.9.109.1.1.1.1"
_POOL = "1.3.6.1.4.1.9.9.48.1.1.1"
_JNX = "1.3.6.1.4.1.2636.3.1.13.1"
_JNX_INDEXES = ["jnxOperatingContentsIndex", "jnxOperatingL1Index", "jnxOperatingL2Index", "jnxOperatingL3Index"]
_JNX_LOOKUP = [("jnxOperatingDescr", f"{_JNX}.5", "DisplayString")]
_HW = "1.3.6.1.4.1.2011.5.25.31.1.1.1.1"
_FGT = "1.3.6.1.4.1.12356.101.4.1"

MODULES: dict[str, dict[str, Any]] = {
    "host_resources": {
        "walk": [f"{_HR}.1", f"{_HR}.2", f"{_HR}.3.3.1.2", *[oid for _, oid, _ in _DEVICE_LOOKUPS]],
        "metrics": [
            _m("hrSystemUptime", f"{_HR}.1.1", "gauge", "The amount of time since this host was last initialized"),
            _m("hrSystemNumUsers", f"{_HR}.1.5", "gauge",
               "The number of user sessions for which this host is storing state information"),
            _m("hrSystemProcesses", f"{_HR}.1.6", "gauge",
               "The number of process contexts currently loaded or running on this system."),
            _m("hrSystemMaxProcesses", f"{_HR}.1.7", "gauge",
               "The maximum number of process contexts this system can support"),
            _m("hrMemorySize", f"{_HR}.2.2", "gauge",
               "The amount of physical read-write main memory, typically RAM, contained by the host."),
            _m("hrStorageAllocationUnits", f"{_HR}.2.3.1.4", "gauge",
               "The size, in bytes, of the data objects allocated from this pool", ["hrStorageIndex"],
               _STORAGE_LOOKUPS),
            _m("hrStorageSize", f"{_HR}.2.3.1.5", "gauge",
               "The size of the storage represented by this entry, in units of hrStorageAllocationUnits",
               ["hrStorageIndex"], _STORAGE_LOOKUPS),
            _m("hrStorageUsed", f"{_HR}.2.3.1.6", "gauge",
               "The amount of the storage represented by this entry that is allocated, in units of "
               "hrStorageAllocationUnits.", ["hrStorageIndex"], _STORAGE_LOOKUPS),
            _m("hrStorageAllocationFailures", f"{_HR}.2.3.1.7", "counter",
               "The number of requests for storage represented by this entry that could not be honored due to not "
               "enough storage", ["hrStorageIndex"], _STORAGE_LOOKUPS),
            _m("hrProcessorLoad", f"{_HR}.3.3.1.2", "gauge",
               "The average, over the last minute, of the percentage of time that this processor was not idle",
               ["hrDeviceIndex"], _DEVICE_LOOKUPS),
        ],
    },
    "entity_sensor": {
        "walk": ["1.3.6.1.2.1.99.1.1.1", _ENT_NAME],
        "metrics": [
            _m("entPhySensorType", "1.3.6.1.2.1.99.1.1.1.1", "gauge",
               "The type of data returned by the associated entPhySensorValue object (8 celsius, 10 rpm, ...)",
               ["entPhysicalIndex"], _ENT_LOOKUP),
            _m("entPhySensorScale", "1.3.6.1.2.1.99.1.1.1.2", "gauge",
               "The exponent to apply to values returned by the associated entPhySensorValue object (9 units)",
               ["entPhysicalIndex"], _ENT_LOOKUP),
            _m("entPhySensorPrecision", "1.3.6.1.2.1.99.1.1.1.3", "gauge",
               "The number of decimal places of precision in fixed-point sensor values", ["entPhysicalIndex"],
               _ENT_LOOKUP),
            _m("entPhySensorValue", "1.3.6.1.2.1.99.1.1.1.4", "gauge",
               "The most recent measurement obtained by the agent for this sensor", ["entPhysicalIndex"],
               _ENT_LOOKUP),
            _m("entPhySensorOperStatus", "1.3.6.1.2.1.99.1.1.1.5", "gauge",
               "The operational status of the sensor (1 ok, 2 unavailable, 3 nonoperational)",
               ["entPhysicalIndex"], _ENT_LOOKUP),
        ],
    },
    "cisco_cpu_memory": {
        "walk": [f"{_CPM}.6", f"{_CPM}.7", f"{_CPM}.8", f"{_POOL}.2", f"{_POOL}.5", f"{_POOL}.6"],
        "metrics": [
            _m("cpmCPUTotal5secRev", f"{_CPM}.6", "gauge",
               "The overall CPU busy percentage in the last 5 second period", ["cpmCPUTotalIndex"]),
            _m("cpmCPUTotal1minRev", f"{_CPM}.7", "gauge",
               "The overall CPU busy percentage in the last 1 minute period", ["cpmCPUTotalIndex"]),
            _m("cpmCPUTotal5minRev", f"{_CPM}.8", "gauge",
               "The overall CPU busy percentage in the last 5 minute period", ["cpmCPUTotalIndex"]),
            _m("ciscoMemoryPoolUsed", f"{_POOL}.5", "gauge",
               "Indicates the number of bytes from the memory pool that are currently in use by applications on "
               "the managed device.", ["ciscoMemoryPoolType"], [("ciscoMemoryPoolName", f"{_POOL}.2",
                                                                 "DisplayString")]),
            _m("ciscoMemoryPoolFree", f"{_POOL}.6", "gauge",
               "Indicates the number of bytes from the memory pool that are currently unused on the managed device",
               ["ciscoMemoryPoolType"], [("ciscoMemoryPoolName", f"{_POOL}.2", "DisplayString")]),
        ],
    },
    "juniper_operating": {
        "walk": [f"{_JNX}.5", f"{_JNX}.7", f"{_JNX}.8", f"{_JNX}.11"],
        "metrics": [
            _m("jnxOperatingTemp", f"{_JNX}.7", "gauge", "The temperature in Celsius (degrees C) of this subject",
               _JNX_INDEXES, _JNX_LOOKUP),
            _m("jnxOperatingCPU", f"{_JNX}.8", "gauge", "The CPU utilization in percentage of this subject",
               _JNX_INDEXES, _JNX_LOOKUP),
            _m("jnxOperatingBuffer", f"{_JNX}.11", "gauge", "The buffer pool utilization in percentage of this "
               "subject", _JNX_INDEXES, _JNX_LOOKUP),
        ],
    },
    "huawei_entity": {
        "walk": [f"{_HW}.5", f"{_HW}.7", f"{_HW}.11", _ENT_NAME],
        "metrics": [
            _m("hwEntityCpuUsage", f"{_HW}.5", "gauge", "The CPU usage of the entity, in percent",
               ["entPhysicalIndex"], _ENT_LOOKUP),
            _m("hwEntityMemUsage", f"{_HW}.7", "gauge", "The memory usage of the entity, in percent",
               ["entPhysicalIndex"], _ENT_LOOKUP),
            _m("hwEntityTemperature", f"{_HW}.11", "gauge", "The temperature of the entity, in Celsius",
               ["entPhysicalIndex"], _ENT_LOOKUP),
        ],
    },
    "fortigate_system": {
        "get": [f"{_FGT}.3.0", f"{_FGT}.4.0", f"{_FGT}.8.0"],
        "walk": [],
        "metrics": [
            _m("fgSysCpuUsage", f"{_FGT}.3", "gauge", "Current CPU usage (percentage)"),
            _m("fgSysMemUsage", f"{_FGT}.4", "gauge", "Current memory utilization (percentage)"),
            _m("fgSysSesCount", f"{_FGT}.8", "gauge", "Number of active sessions on the device"),
        ],
    },
}
