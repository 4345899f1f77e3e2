"""Reading an inventory (YAML or CSV) and validating it whole: every issue with its YAML path and line or CSV line."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from agent.errors import ConfigError, ConfigIssue
from agent.inventory import (
    COLUMNS,
    DEFAULT_HIERARCHIES,
    Inventory,
    InventoryHierarchy,
    InventoryOffice,
)
from agent.yamlsource import format_path, line_of, parse_nodes

_LIST_COLUMNS = ("services", "predecessors")
_OFFICE = TypeAdapter(InventoryOffice)
_HIERARCHY = TypeAdapter(InventoryHierarchy)


def load(path: str | os.PathLike[str]) -> Inventory:
    """Read and validate an inventory file; raises ConfigError listing every issue."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(source, [ConfigIssue("", f"cannot read inventory: {err.strerror or err}")]) from None
    reader = _read_csv if source.lower().endswith(".csv") else _read_yaml
    records, hierarchies, issues = reader(raw)
    inventory, more = _validate(records, hierarchies)
    issues += more
    if issues:
        raise ConfigError(source, sorted(issues, key=lambda issue: issue.line or 0))
    inventory.source = source
    return inventory


@dataclass
class _Record:
    """One raw entry (an office or a hierarchy) and how to name a place in it."""

    data: Any
    where: Callable[[tuple[Any, ...]], Callable[[str], ConfigIssue]]
    label: str
    """How another entry refers to this one: 'offices[3]' or 'line 5'."""

    def issue(self, loc: tuple[Any, ...], message: str) -> ConfigIssue:
        """An issue at `loc` inside this entry."""
        return self.where(loc)(message)


def _read_yaml(raw: bytes) -> tuple[list[_Record], list[_Record] | None, list[ConfigIssue]]:
    try:
        data, root = parse_nodes(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        return [], None, [ConfigIssue("", f"not UTF-8 text ({err.reason})", raw[: err.start].count(b"\n") + 1)]
    except yaml.MarkedYAMLError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else None
        return [], None, [ConfigIssue("", f"invalid YAML: {err.context or ''} {err.problem or ''}".strip(), line)]
    except yaml.YAMLError as err:
        return [], None, [ConfigIssue("", f"invalid YAML: {err}")]

    def at(loc: tuple[Any, ...]) -> Callable[[str], ConfigIssue]:
        return lambda message: ConfigIssue(format_path(loc), message, line_of(root, loc))

    if not isinstance(data, dict):
        return [], None, [at(())("the inventory must be a YAML mapping with hierarchies: and offices:")]
    issues = [at((key,))("unknown key") for key in data if key not in ("hierarchies", "offices")]
    offices = data.get("offices")
    if offices is None:
        issues.append(at(("offices",))("missing required key"))
        offices = []
    elif not isinstance(offices, list):
        issues.append(at(("offices",))("a list of offices"))
        offices = []
    elif not offices:
        issues.append(at(("offices",))("at least one office"))
    records = [_Record(body, _prefixed(at, ("offices", index)), f"offices[{index}]")
               for index, body in enumerate(offices)]
    hierarchies: list[_Record] | None = None
    if "hierarchies" in data:
        body = data["hierarchies"]
        if not isinstance(body, list) or not body:
            issues.append(at(("hierarchies",))("a list of at least one hierarchy"))
        else:
            hierarchies = [_Record(item, _prefixed(at, ("hierarchies", index)), f"hierarchies[{index}]")
                           for index, item in enumerate(body)]
    return records, hierarchies, issues


def _read_csv(raw: bytes) -> tuple[list[_Record], list[_Record] | None, list[ConfigIssue]]:
    try:
        text = raw.decode("utf-8-sig")  # spreadsheets write a byte-order mark
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        return [], None, [ConfigIssue("", f"not UTF-8 text ({err.reason}): save the sheet as 'CSV UTF-8'", line)]
    reader = csv.reader(io.StringIO(text, newline=""))
    issues: list[ConfigIssue] = []
    header: list[str] | None = None
    records: list[_Record] = []
    start = 1
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [cell.strip() for cell in row]
                issues += _header_issues(header, line)
                continue
            if len(row) > len(header):
                issues.append(ConfigIssue("", f"{len(row)} cells but {len(header)} columns", line))
                continue
            data = _csv_office(dict(zip(header, row, strict=False)))
            records.append(_Record(data, _csv_where(line), f"line {line}"))
    except csv.Error as err:
        issues.append(ConfigIssue("", f"invalid CSV: {err}", reader.line_num))
    if header is None:
        issues.append(ConfigIssue("", f"empty CSV: the first line names the columns ({', '.join(COLUMNS)})", 1))
    elif not records and not issues:
        issues.append(ConfigIssue("", "no offices: at least one row after the header", 2))
    return records, None, issues


def _header_issues(header: list[str], line: int) -> list[ConfigIssue]:
    issues = []
    seen: set[str] = set()
    for column in header:
        if column not in COLUMNS:
            issues.append(ConfigIssue(column, f"unknown column; known: {', '.join(COLUMNS)}", line))
        elif column in seen:
            issues.append(ConfigIssue(column, "duplicate column", line))
        seen.add(column)
    for column in ("org_id", "name", "level", "hierarchy"):
        if column not in header:
            issues.append(ConfigIssue(column, "missing column", line))
    return issues


def _csv_office(cells: dict[str, str]) -> dict[str, Any]:
    """A CSV row as the YAML form: empty cells left out, list columns split on ';'."""
    data: dict[str, Any] = {}
    for column, cell in cells.items():
        value = cell.strip()
        if column not in COLUMNS or not value:
            continue
        data[column] = [item.strip() for item in value.split(";") if item.strip()] if column in _LIST_COLUMNS \
            else value
    return data


def _csv_where(line: int) -> Callable[[tuple[Any, ...]], Callable[[str], ConfigIssue]]:
    return lambda loc: (lambda message: ConfigIssue(str(loc[0]) if loc else "", message, line))


def _prefixed(at: Callable[[tuple[Any, ...]], Callable[[str], ConfigIssue]],
              prefix: tuple[Any, ...]) -> Callable[[tuple[Any, ...]], Callable[[str], ConfigIssue]]:
    return lambda loc: at(prefix + loc)


def _validate(records: list[_Record], raw_hierarchies: list[_Record] | None) -> tuple[Inventory, list[ConfigIssue]]:
    issues: list[ConfigIssue] = []
    hierarchies = _hierarchies(raw_hierarchies, issues)
    offices: list[tuple[_Record, InventoryOffice]] = []
    unusable: set[str] = set()  # org_ids of rows that failed: no "does not exist" for references to them
    first: dict[str, _Record] = {}
    for record in records:
        if not isinstance(record.data, dict):
            issues.append(record.issue((), "an office is a mapping (org_id: ..., name: ..., level: ...)"))
            continue
        org_id = record.data.get("org_id")
        if isinstance(org_id, str):
            if org_id in first:
                issues.append(record.issue(("org_id",), f"duplicate org_id {org_id!r} (also {first[org_id].label})"))
            first.setdefault(org_id, record)
        try:
            offices.append((record, _OFFICE.validate_python(record.data)))
        except ValidationError as err:
            issues += [record.issue(tuple(e["loc"]), _message(e)) for e in err.errors()]
            if isinstance(record.data.get("org_id"), str):
                unusable.add(record.data["org_id"])
    issues += _cross_checks(offices, hierarchies, unusable)
    return Inventory(hierarchies, [office for _, office in offices]), issues


def _hierarchies(records: list[_Record] | None, issues: list[ConfigIssue]) -> dict[str, InventoryHierarchy]:
    if records is None:
        return {h.name: h for h in (_HIERARCHY.validate_python(body) for body in DEFAULT_HIERARCHIES)}
    found: dict[str, tuple[_Record, InventoryHierarchy]] = {}
    for record in records:
        try:
            hierarchy = _HIERARCHY.validate_python(record.data)
        except ValidationError as err:
            issues += [record.issue(tuple(e["loc"]), _message(e)) for e in err.errors()]
            continue
        if hierarchy.name in found:
            issues.append(record.issue(("name",), f"duplicate hierarchy {hierarchy.name!r} "
                                       f"(also {found[hierarchy.name][0].label})"))
            continue
        if hierarchy.valid_from and hierarchy.valid_until and hierarchy.valid_from > hierarchy.valid_until:
            issues.append(record.issue(("from",), f"from {hierarchy.valid_from} is after until "
                                       f"{hierarchy.valid_until}"))
            continue
        for other_record, other in found.values():
            if _overlap(hierarchy, other):
                issues.append(record.issue(("name",), f"hierarchy {hierarchy.name!r} ({_period(hierarchy)}) "
                                           f"overlaps {other.name!r} ({_period(other)}, {other_record.label}): "
                                           "give them from/until dates so that a day belongs to one hierarchy"))
        found[hierarchy.name] = (record, hierarchy)
    return {name: hierarchy for name, (_, hierarchy) in found.items()}


def _cross_checks(offices: list[tuple[_Record, InventoryOffice]], hierarchies: dict[str, InventoryHierarchy],
                  unusable: set[str]) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    by_id: dict[str, tuple[_Record, InventoryOffice]] = {}
    for record, office in offices:
        by_id.setdefault(office.org_id, (record, office))
    addresses: dict[tuple[str, str], _Record] = {}
    successors: dict[str, tuple[_Record, InventoryOffice]] = {}
    for record, office in offices:
        hierarchy = hierarchies.get(office.hierarchy)
        if hierarchy is None:
            if hierarchies:
                issues.append(record.issue(("hierarchy",), f"unknown hierarchy {office.hierarchy!r}; known: "
                                           f"{', '.join(sorted(hierarchies))}"))
        elif office.level not in hierarchy.levels:
            issues.append(record.issue(("level",), f"level {office.level!r} is not in hierarchy "
                                       f"{hierarchy.name!r} ({', '.join(hierarchy.levels)})"))
        else:
            issues += _parent_issues(record, office, hierarchy, by_id, unusable)
        if office.agent is not None:
            key = (office.hierarchy, office.agent)
            if key in addresses:
                issues.append(record.issue(("agent",), f"agent address {office.agent} is also "
                                           f"{addresses[key].label}'s: an office is scraped once"))
            addresses.setdefault(key, record)
        for index, old in enumerate(office.predecessors):
            issues += _predecessor_issues(record, office, index, old, by_id, unusable, successors)
    issues += _cycle_issues(offices, by_id)
    return issues


def _parent_issues(record: _Record, office: InventoryOffice, hierarchy: InventoryHierarchy,
                   by_id: dict[str, tuple[_Record, InventoryOffice]], unusable: set[str]) -> list[ConfigIssue]:
    rank = hierarchy.levels.index(office.level)
    if office.parent_id is None:
        if rank > 0:
            return [record.issue(("parent_id",), f"an office at level {office.level!r} needs a parent_id")]
        return []
    if office.parent_id == office.org_id:
        return [record.issue(("parent_id",), "an office cannot be its own parent")]
    found = by_id.get(office.parent_id)
    if found is None:
        if office.parent_id in unusable:
            return []
        return [record.issue(("parent_id",), f"parent {office.parent_id!r} is not in the inventory")]
    parent = found[1]
    if parent.hierarchy != office.hierarchy:
        return [record.issue(("parent_id",), f"parent {office.parent_id!r} is in hierarchy {parent.hierarchy!r}, "
                             f"not {office.hierarchy!r}")]
    allowed = [hierarchy.levels[rank - 1], office.level] if rank > 0 else [office.level]
    if parent.level not in allowed:
        return [record.issue(("parent_id",), f"parent {office.parent_id!r} is at level {parent.level!r}; the parent "
                             f"of a {office.level!r} office is at level {' or '.join(map(repr, allowed))}")]
    return []


def _predecessor_issues(record: _Record, office: InventoryOffice, index: int, old: str,
                        by_id: dict[str, tuple[_Record, InventoryOffice]], unusable: set[str],
                        successors: dict[str, tuple[_Record, InventoryOffice]]) -> list[ConfigIssue]:
    loc = ("predecessors", index)
    found = by_id.get(old)
    if found is None:
        return [] if old in unusable else [record.issue(loc, f"predecessor {old!r} is not in the inventory")]
    if found[1].hierarchy == office.hierarchy:
        return [record.issue(loc, f"predecessor {old!r} is in the same hierarchy {office.hierarchy!r}; "
                             "predecessors are offices of an earlier hierarchy merged into this one")]
    first = successors.setdefault(old, (record, office))
    if first[1] is not office:
        return [record.issue(loc, f"predecessor {old!r} is already merged into {first[1].org_id!r} "
                             f"({first[0].label}); an office has one successor")]
    return []


def _cycle_issues(offices: list[tuple[_Record, InventoryOffice]],
                  by_id: dict[str, tuple[_Record, InventoryOffice]]) -> list[ConfigIssue]:
    issues = []
    reported: set[str] = set()
    for record, office in offices:
        if office.parent_id == office.org_id:
            continue  # reported as its own parent
        chain = [office.org_id]
        current = office
        while current.parent_id is not None and current.parent_id in by_id and len(chain) <= len(by_id):
            current = by_id[current.parent_id][1]
            if current.org_id in chain:
                loop = chain[chain.index(current.org_id):]
                if current.org_id == office.org_id and not reported & set(loop):
                    reported.update(loop)
                    issues.append(record.issue(("parent_id",), "parent_id forms a cycle: "
                                               + " -> ".join([*loop, office.org_id])))
                break
            chain.append(current.org_id)
    return issues


def _overlap(a: InventoryHierarchy, b: InventoryHierarchy) -> bool:
    a_end, b_end = a.valid_until or date.max, b.valid_until or date.max
    a_start, b_start = a.valid_from or date.min, b.valid_from or date.min
    return a_start <= b_end and b_start <= a_end


def _period(hierarchy: InventoryHierarchy) -> str:
    start, end = hierarchy.valid_from, hierarchy.valid_until
    if start and end:
        return f"{start} to {end}"
    return f"from {start}" if start else f"until {end}" if end else "always"


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing required key"
    return str(error["msg"]).removeprefix("Value error, ")
