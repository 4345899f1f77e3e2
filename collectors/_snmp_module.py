"""snmp_exporter's module format (walk, get, metrics with indexes, lookups and types) and how a run's varbinds
become samples with snmp_exporter v0.21's names, label values and numbers (its collector/collector.go)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, Field, model_validator

from collectors._snmp_ber import (
    COUNTER64,
    IP_ADDRESS,
    OBJECT_IDENTIFIER,
    Oid,
    VarBind,
    format_oid,
    parse_oid,
)
from collectors.base import RESERVED_LABELS, MetricSink, MetricSpec, Settings

IndexType = Literal[
    "gauge", "counter", "Integer32", "Integer", "PhysAddress48", "OctetString", "DisplayString", "InetAddressIPv4",
    "InetAddressIPv6", "InetAddress", "InetAddressMissingSize", "LldpPortId", "EnumAsInfo",
]
StringType = Literal[
    "OctetString", "DisplayString", "PhysAddress48", "InetAddressIPv4", "InetAddressIPv6", "InetAddress",
    "InetAddressMissingSize", "LldpPortId",
]
MetricType = Literal[
    "gauge", "counter", "Float", "Double", "DateAndTime", "EnumAsInfo", "EnumAsStateSet", "Bits",
    "OctetString", "DisplayString", "PhysAddress48", "InetAddressIPv4", "InetAddressIPv6", "InetAddress",
    "InetAddressMissingSize", "LldpPortId",
]
_STRING_TYPES = frozenset(get_args(StringType))
# Types whose real type is given by the column before them (snmp_exporter's combinedTypeMapping).
_COMBINED: dict[str, dict[int, str]] = {
    "InetAddress": {1: "InetAddressIPv4", 2: "InetAddressIPv6"},
    "InetAddressMissingSize": {1: "InetAddressIPv4", 2: "InetAddressIPv6"},
    "LldpPortId": {1: "DisplayString", 2: "DisplayString", 3: "PhysAddress48", 5: "DisplayString",
                   7: "DisplayString"},
}
_WRAP_COUNTER64 = 1 << 53  # snmp_exporter's default --snmp.wrap-large-counters: keep float64 exact
_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RENDER_SLICE = 128  # varbinds rendered between yields to the event loop (well under 1 ms)
_FILTER_SLICE = 2048  # varbinds filtered between yields


def _oid_text(value: str) -> str:
    return format_oid(parse_oid(value))


def _label_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a valid label name")
    if value in RESERVED_LABELS:
        raise ValueError(f"label {value!r} is added by the agent itself; rename it")
    return value


def _metric_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a valid metric name")
    return value


OidText = Annotated[str, AfterValidator(_oid_text)]
LabelName = Annotated[str, AfterValidator(_label_name)]
MetricName = Annotated[str, AfterValidator(_metric_name)]


class IndexDef(Settings):
    """How part of a row's index becomes a label (snmp_exporter `indexes:` entry)."""

    labelname: LabelName
    type: IndexType
    fixed_size: Annotated[int, Field(ge=0, le=256)] = 0
    implied: bool = False
    enum_values: dict[int, str] = Field(default_factory=dict)


class LookupDef(Settings):
    """A label read from another column of the same row (snmp_exporter `lookups:` entry); no labels drops it."""

    labels: list[LabelName]
    labelname: LabelName
    oid: OidText | None = None
    type: IndexType = "DisplayString"

    @model_validator(mode="after")
    def _oid_needed(self) -> LookupDef:
        if self.labels and self.oid is None:
            raise ValueError("a lookup with labels needs the oid to look up")
        return self


class FilterDef(Settings):
    """snmp_exporter's dynamic filter: keep the rows of `targets` whose `oid` column holds one of `values`."""

    oid: OidText
    targets: Annotated[list[OidText], Field(min_length=1)]
    values: Annotated[list[str], Field(min_length=1)]


class MetricDef(Settings):
    """One object to export: its name, OID, type, index labels and lookups (snmp_exporter `metrics:` entry)."""

    name: MetricName
    oid: OidText
    type: MetricType
    help: str = ""
    indexes: list[IndexDef] = Field(default_factory=list)
    lookups: list[LookupDef] = Field(default_factory=list)
    enum_values: dict[int, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _lookups_known(self) -> MetricDef:
        known = {index.labelname for index in self.indexes}
        for lookup in self.lookups:
            missing = [label for label in lookup.labels if label not in known]
            if missing:
                raise ValueError(f"lookup {lookup.labelname!r} uses labels {missing} that no index or earlier "
                                 "lookup defines")
            known.add(lookup.labelname)
        return self

    def output(self) -> MetricSpec:
        """The metric as the sink declares it: the exported name, type, help and label names in order."""
        return _compile(self).spec


@dataclass(slots=True)
class Plan:
    """A module compiled for runs: what to get and walk, and the metrics by OID."""

    get: list[Oid]
    walk: list[Oid]
    metrics: dict[Oid, _Metric]
    lengths: tuple[int, ...]
    specs: list[MetricSpec] = field(default_factory=list)
    lookup_only: frozenset[Oid] = frozenset()
    """Walked roots that hold no metric, only the label columns of lookups: these may be cached between runs."""


def compile_plan(get: Iterable[str], walk: Iterable[str], metrics: Iterable[MetricDef]) -> Plan:
    """Compile a module; later metric definitions for the same OID win, as in snmp_exporter's metric tree."""
    compiled = {parse_oid(m.oid): _compile(m) for m in metrics}
    roots = list(dict.fromkeys(parse_oid(oid) for oid in walk))
    lookups = {parse_oid(lookup.oid) for m in metrics for lookup in m.lookups if lookup.oid is not None}
    return Plan(
        get=list(dict.fromkeys(parse_oid(oid) for oid in get)),
        walk=roots,
        metrics=compiled,
        lengths=tuple(sorted({len(oid) for oid in compiled})),
        specs=[m.spec for m in compiled.values()],
        lookup_only=frozenset(root for root in roots
                              if not any(_related(root, oid) for oid in compiled)
                              and any(_related(root, oid) for oid in lookups)),
    )


def _related(root: Oid, oid: Oid) -> bool:
    """Whether one OID lies within the other's subtree."""
    return oid[:len(root)] == root or root[:len(oid)] == oid


Rows = dict[Oid, tuple[str, ...]]


async def apply_filters(filters: Iterable[FilterDef], varbinds: list[VarBind]) -> list[VarBind]:
    """The varbinds without the target rows whose filter column value is not among the filter's values.

    Works in slices, yielding to the event loop between them, as render does.
    """
    for definition in filters:
        column = parse_oid(definition.oid)
        targets = [parse_oid(target) for target in definition.targets]
        wanted = set(definition.values)
        keep = {vb.oid[len(column):] for vb in varbinds
                if vb.oid[:len(column)] == column and value_as_string(vb, "DisplayString") in wanted}
        # A target may be a column or a whole table: a row's index is the tail as long as the filter column's.
        lengths = {len(index) for index in keep}
        kept: list[VarBind] = []
        for start in range(0, len(varbinds), _FILTER_SLICE):
            await asyncio.sleep(0)
            kept += [vb for vb in varbinds[start:start + _FILTER_SLICE]
                     if not any(vb.oid[:len(target)] == target for target in targets)
                     or any(vb.oid[len(vb.oid) - n:] in keep for n in lengths)]
        varbinds = kept
    return varbinds


async def render(plan: Plan, varbinds: list[VarBind], sink: MetricSink) -> tuple[dict[Oid, VarBind], dict[int, Rows]]:
    """Turn a run's varbinds into samples; returns them by OID, and each label set's rows (index -> label values).
    Yields to the event loop every _RENDER_SLICE varbinds.

    Each varbind belongs to the metric with the shortest matching OID prefix (snmp_exporter's metric tree); a
    walk returns a column's rows one after another, so the last match is tried first. Label values are computed
    once per row and lookup set.
    """
    await asyncio.sleep(0)  # the walk's last response was decoded in this turn
    pdus = {vb.oid: vb for vb in varbinds}
    items = list(pdus.values())
    by_key: dict[int, Rows] = {}
    metrics, lengths, add = plan.metrics, plan.lengths, sink.add
    metric: _Metric | None = None
    prefix: Oid = ()
    length = 0
    rows: Rows = {}
    for start in range(0, len(items), _RENDER_SLICE):
        await asyncio.sleep(0)
        for vb in items[start:start + _RENDER_SLICE]:
            oid = vb.oid
            if metric is None or oid[:length] != prefix:
                metric = None
                for length in lengths:
                    metric = metrics.get(oid[:length])
                    if metric is not None:
                        break
                if metric is None:
                    continue
                prefix = oid[:length]
                rows = by_key.setdefault(metric.label_key, {})
            index = oid[length:]
            labels = rows.get(index)
            if labels is None:
                labels = rows[index] = metric.labels_for(index, pdus)
            if metric.kind == _KIND_NUMBER:
                value = vb.value
                if type(value) is not int:
                    add(metric.name, _number(vb), *labels)
                elif vb.tag == COUNTER64:
                    add(metric.name, value % _WRAP_COUNTER64, *labels)
                else:
                    add(metric.name, value, *labels)
            else:
                metric.emit(vb, index, labels, pdus, sink)
    return pdus, by_key


def value_as_string(vb: VarBind, type_: str = "") -> str:
    """A value as snmp_exporter writes it into a label (pduValueAsString); binary DisplayStrings are hex."""
    value = vb.value
    if vb.tag == OBJECT_IDENTIFIER and isinstance(value, tuple):
        return format_oid(value)
    if vb.tag == IP_ADDRESS and isinstance(value, bytes):
        return ".".join(map(str, value))
    if isinstance(value, bytes):
        type_ = type_ or "OctetString"
        if type_ in _COMBINED:
            type_ = "OctetString"
        parts = (len(value), *value) if type_ in ("OctetString", "DisplayString") else tuple(value)
        return _index_as_string(parts, type_, 0, False, {})[0]
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{Decimal(repr(value)):f}"
    return ""


# ---------------------------------------------------------------------------------------------- compiled form

_KIND_NUMBER, _KIND_FLOAT, _KIND_DATE, _KIND_INFO, _KIND_STATESET, _KIND_BITS, _KIND_STRING = range(7)
_LABEL_KEYS: dict[str, int] = {}


class _Metric:
    """A metric definition prepared for rendering."""

    __slots__ = ("base_labels", "combined_prev", "enum", "indexes", "kind", "label_key", "lookups", "name",
                 "own_label", "spec", "type")

    def __init__(self, definition: MetricDef) -> None:
        self.type = definition.type
        self.enum = dict(definition.enum_values)
        self.indexes = [(i.labelname, i.type, i.fixed_size, i.implied, dict(i.enum_values))
                        for i in definition.indexes]
        self.lookups = [(tuple(lk.labels), lk.labelname, parse_oid(lk.oid) if lk.oid else (), lk.type)
                        for lk in definition.lookups]
        labels = [i.labelname for i in definition.indexes]
        for lookup in definition.lookups:
            if lookup.labels:
                labels.append(lookup.labelname)
            elif lookup.labelname in labels:
                labels.remove(lookup.labelname)
        self.base_labels = tuple(sorted(dict.fromkeys(labels)))
        signature = repr((self.indexes, self.lookups, self.base_labels))
        self.label_key = _LABEL_KEYS.setdefault(signature, len(_LABEL_KEYS))
        kind = {"gauge": _KIND_NUMBER, "counter": _KIND_NUMBER, "Float": _KIND_FLOAT, "Double": _KIND_FLOAT,
                "DateAndTime": _KIND_DATE, "EnumAsInfo": _KIND_INFO, "EnumAsStateSet": _KIND_STATESET,
                "Bits": _KIND_BITS}.get(definition.type, _KIND_STRING)
        self.kind = kind
        self.name = definition.name + "_info" if kind == _KIND_INFO else definition.name
        own = kind in (_KIND_INFO, _KIND_STATESET, _KIND_BITS) or (
            kind == _KIND_STRING and definition.name not in self.base_labels)
        self.own_label = definition.name if own else ""
        oid = parse_oid(definition.oid)
        self.combined_prev = (*oid[:-1], oid[-1] - 1) if definition.type in _COMBINED and oid[-1] > 0 else ()
        help_text = definition.help or f"{definition.name} - {definition.oid}"
        suffix = {_KIND_INFO: " (EnumAsInfo)", _KIND_STATESET: " (EnumAsStateSet)", _KIND_BITS: " (Bits)"}
        # snmp_exporter's types: MIB names such as ifHCInOctets are counters without the _total suffix.
        metric_type: Literal["gauge", "counter"] = "counter" if definition.type == "counter" else "gauge"
        labels_out = (*self.base_labels, self.own_label) if self.own_label else self.base_labels
        self.spec = MetricSpec(self.name, metric_type, help_text + suffix.get(kind, ""), labels_out)

    def labels_for(self, index: Oid, pdus: dict[Oid, VarBind]) -> tuple[str, ...]:
        """The base label values of one row, from its index and the lookups (snmp_exporter indexesToLabels)."""
        labels: dict[str, str] = {}
        label_oids: dict[str, Oid] = {}
        rest = index
        for labelname, type_, fixed_size, implied, enum in self.indexes:
            text, used, rest = _index_as_string(rest, type_, fixed_size, implied, enum)
            labels[labelname] = text
            label_oids[labelname] = used
        for sources, labelname, oid, type_ in self.lookups:
            if not sources:
                labels.pop(labelname, None)
                continue
            full = oid
            for source in sources:
                full += label_oids.get(source, ())
            vb = pdus.get(full)
            if vb is None:
                labels[labelname] = ""
                continue
            labels[labelname] = value_as_string(vb, type_)
            label_oids[labelname] = (vb.value,) if isinstance(vb.value, int) else (0,)
        return tuple(labels.get(name, "") for name in self.base_labels)

    def emit(self, vb: VarBind, index: Oid, labels: tuple[str, ...], pdus: dict[Oid, VarBind],
             sink: MetricSink) -> None:
        """Add this varbind's samples (one, or one per enum value for state sets and bits)."""
        kind = self.kind
        if kind == _KIND_NUMBER:
            sink.add(self.name, _number(vb), *labels)
        elif kind == _KIND_STRING:
            if not self.own_label:
                sink.add(self.name, 1, *labels)
                return
            type_: str = self.type
            if self.combined_prev:
                prev = pdus.get(self.combined_prev + index)
                type_ = _COMBINED[type_].get(int(_number(prev)), "OctetString") if prev else "OctetString"
            sink.add(self.name, 1, *labels, value_as_string(vb, type_))
        elif kind == _KIND_FLOAT:
            sink.add(self.name, _number(vb), *labels)
        elif kind == _KIND_INFO:
            number = int(_number(vb))
            sink.add(self.name, 1, *labels, self.enum.get(number, str(number)))
        elif kind == _KIND_STATESET:
            number = int(_number(vb))
            if number not in self.enum:
                sink.add(self.name, 1, *labels, str(number))
            for key, state in self.enum.items():
                sink.add(self.name, 1 if key == number else 0, *labels, state)
        elif kind == _KIND_BITS:
            if isinstance(vb.value, bytes):
                octets = vb.value
                for bit, state in self.enum.items():
                    on = bit < len(octets) * 8 and octets[bit // 8] & (0x80 >> (bit % 8))
                    sink.add(self.name, 1 if on else 0, *labels, state)
        else:
            timestamp = _date_and_time(vb.value)
            if timestamp is not None:
                sink.add(self.name, timestamp, *labels)


def _compile(definition: MetricDef) -> _Metric:
    return _Metric(definition)


def _number(vb: VarBind) -> float:
    value = vb.value
    if vb.tag == COUNTER64 and isinstance(value, int):
        return float(value % _WRAP_COUNTER64)
    if isinstance(value, int | float):
        return float(value)
    return 0.0


def _pad(oids: Oid, count: int) -> tuple[Oid, Oid]:
    """Split at `count`, padding with zeros: some devices drop trailing zeros from an index."""
    head = oids[:count]
    if len(head) < count:
        head += (0,) * (count - len(head))
    return head, oids[count:]


def _index_as_string(oids: Oid, type_: str, fixed_size: int, implied: bool,
                     enum: dict[int, str]) -> tuple[str, Oid, Oid]:
    """(label text, the index arcs used, the arcs left), as snmp_exporter's indexOidsAsString."""
    mapping = _COMBINED.get(type_)
    if mapping is not None:
        if type_ == "InetAddressMissingSize":
            sub, rest = _pad(oids, 1)
            if sub[0] in mapping:
                text, used, rest = _index_as_string(rest, mapping[sub[0]], 0, False, enum)
                return text, sub + used, rest
            return _index_as_string(oids, "OctetString", 0, True, enum)
        sub, rest = _pad(oids, 2)
        if sub[0] in mapping:
            text, used, rest = _index_as_string(rest, mapping[sub[0]], 0, False, enum)
            return text, sub + used, rest
        return _index_as_string(oids, "OctetString", sub[1] + 2, False, enum)
    if type_ in ("gauge", "counter", "Integer32", "Integer"):
        sub, rest = _pad(oids, 1)
        return str(sub[0]), sub, rest
    if type_ == "PhysAddress48":
        sub, rest = _pad(oids, 6)
        return ":".join(f"{arc:02X}" for arc in sub), sub, rest
    if type_ in ("OctetString", "DisplayString"):
        length = len(oids) if implied else fixed_size
        prefix: Oid = ()
        if length == 0:
            prefix, oids = _pad(oids, 1)
            length = prefix[0]
        content, rest = _pad(oids, length)
        raw = bytes(arc & 0xFF for arc in content)
        if type_ == "DisplayString":
            try:
                return raw.decode("utf-8"), prefix + content, rest
            except UnicodeDecodeError:
                pass  # not text: hex, as for OctetString, rather than an invalid label value
        return (f"0x{raw.hex().upper()}" if raw else ""), prefix + content, rest
    if type_ == "InetAddressIPv4":
        sub, rest = _pad(oids, 4)
        return ".".join(map(str, sub)), sub, rest
    if type_ == "InetAddressIPv6":
        sub, rest = _pad(oids, 16)
        return ":".join(f"{sub[i]:02X}{sub[i + 1]:02X}" for i in range(0, 16, 2)), sub, rest
    if type_ == "EnumAsInfo":
        sub, rest = _pad(oids, 1)
        return enum.get(sub[0], str(sub[0])), sub, rest
    raise ValueError(f"unknown index type {type_!r}")


def _date_and_time(value: Any) -> float | None:
    """RFC 2579 DateAndTime (8 or 11 octets) to a Unix timestamp, or None if it is not one."""
    if not isinstance(value, bytes) or len(value) not in (8, 11):
        return None
    tz = dt.UTC
    if len(value) == 11:
        if value[8] not in b"+-" or value[9] > 14 or value[10] > 59:
            return None
        offset = dt.timedelta(hours=value[9], minutes=value[10])
        tz = dt.timezone(-offset if value[8] == ord("-") else offset)
    try:
        moment = dt.datetime(int.from_bytes(value[:2], "big"), value[2], value[3], value[4], value[5],
                             min(value[6], 59), tzinfo=tz)
    except ValueError:
        return None
    return float(int(moment.timestamp()))
