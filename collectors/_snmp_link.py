"""Link health per interface, which no anchor exports: utilization from the octet counters of two consecutive
runs and ifHighSpeed, and ifOperStatus changes counted from consecutive runs and ifLastChange."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from collectors._lru import LruMap
from collectors._snmp_ber import Oid, VarBind
from collectors._snmp_module import Plan, Rows
from collectors.base import MetricSink, MetricSpec

_IF_LABELS = ("ifAlias", "ifDescr", "ifIndex", "ifName")
METRICS = (
    MetricSpec("egov_interface_utilization_ratio", "gauge",
               "Share of the interface's speed (ifHighSpeed, else ifSpeed) used between the last two runs, by "
               "direction (in, out), from ifHCInOctets/ifHCOutOctets (else the 32-bit counters).",
               (*_IF_LABELS, "direction")),
    MetricSpec("egov_interface_state_changes_total", "counter",
               "ifOperStatus changes seen since the agent started: a different status than at the previous run, "
               "or the same status with a newer ifLastChange (down and up again between two runs) counts 2.",
               _IF_LABELS),
)

_SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
_IF_TABLE = (1, 3, 6, 1, 2, 1, 2, 2, 1)
_IFX_TABLE = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
_OPER, _LAST_CHANGE, _SPEED, _IN32, _OUT32 = (*_IF_TABLE, 8), (*_IF_TABLE, 9), (*_IF_TABLE, 5), (*_IF_TABLE, 10), (
    *_IF_TABLE, 16)
_IN64, _OUT64, _HIGH_SPEED = (*_IFX_TABLE, 6), (*_IFX_TABLE, 10), (*_IFX_TABLE, 15)
_LABEL_METRIC = (*_IF_TABLE, 8)  # ifOperStatus: its compiled metric carries if_mib's ifIndex lookups
REQUIRED = (_OPER, _LAST_CHANGE)
_MAX_DEVICES = 4096


@dataclass(slots=True)
class _Interface:
    status: int
    last_change: int
    octets: tuple[int, int] | None
    wide: bool
    changes: int = 0


@dataclass(slots=True)
class _Device:
    at: float = 0.0
    uptime: int = 0
    interfaces: dict[Oid, _Interface] = field(default_factory=dict)


_DEVICES: LruMap[tuple[str, str], _Device] = LruMap(_MAX_DEVICES)


def applies(plan: Plan) -> bool:
    """Whether a module gets what link health needs: ifOperStatus and ifLastChange, with if_mib's labels."""
    return _LABEL_METRIC in plan.metrics and all(
        any(oid[:len(root)] == root for root in plan.walk) for oid in REQUIRED)


async def record(key: tuple[str, str], plan: Plan, pdus: dict[Oid, VarBind], rows: dict[int, Rows],
                 sink: MetricSink) -> None:
    """Compare this run's interfaces with the previous run's of the same check and target, and add the metrics.

    `rows` are render's label values by label set and index: the interfaces are the rows of ifOperStatus's.
    """
    device = _DEVICES.get_or_create(key, _Device)
    now = time.monotonic()
    elapsed = now - device.at if device.at else 0.0
    uptime = _int(pdus.get(_SYS_UPTIME))
    rebooted = uptime is not None and uptime < device.uptime
    seen: dict[Oid, _Interface] = {}
    for count, (index, labels) in enumerate(rows.get(plan.metrics[_LABEL_METRIC].label_key, {}).items(), 1):
        if count % 32 == 0:
            await asyncio.sleep(0)
        vb = pdus.get(_OPER + index)
        if vb is None or not isinstance(vb.value, int):
            continue
        octets, wide = _octets(pdus, index)
        last_change = _int(pdus.get(_LAST_CHANGE + index)) or 0
        current = _Interface(vb.value, last_change, octets, wide)
        before = device.interfaces.get(index)
        if before is not None:
            current.changes = before.changes
            if before.status != current.status:
                current.changes += 1
            elif not rebooted and before.last_change != last_change:
                current.changes += 2
            speed = _speed(pdus, index)
            if elapsed > 0 and speed and octets and before.octets and wide == before.wide and not rebooted:
                for direction, new, old in zip(("in", "out"), octets, before.octets, strict=True):
                    delta = new - old if wide else (new - old) % (1 << 32)
                    if delta >= 0:
                        sink.add("egov_interface_utilization_ratio", delta * 8 / (elapsed * speed), *labels,
                                 direction)
        sink.add("egov_interface_state_changes_total", current.changes, *labels)
        seen[index] = current
    device.at, device.uptime, device.interfaces = now, uptime or 0, seen


def _octets(pdus: dict[Oid, VarBind], index: Oid) -> tuple[tuple[int, int] | None, bool]:
    high_in, high_out = _int(pdus.get(_IN64 + index)), _int(pdus.get(_OUT64 + index))
    if high_in is not None and high_out is not None:
        return (high_in, high_out), True
    low_in, low_out = _int(pdus.get(_IN32 + index)), _int(pdus.get(_OUT32 + index))
    if low_in is not None and low_out is not None:
        return (low_in, low_out), False
    return None, False


def _speed(pdus: dict[Oid, VarBind], index: Oid) -> float:
    """Bits per second: ifHighSpeed (Mbit/s) when set, else ifSpeed."""
    high = _int(pdus.get(_HIGH_SPEED + index))
    if high:
        return high * 1e6
    return float(_int(pdus.get(_SPEED + index)) or 0)


def _int(vb: VarBind | None) -> int | None:
    return vb.value if vb is not None and isinstance(vb.value, int) else None
