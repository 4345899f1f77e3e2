"""`egov-agent inventory`: the fleet's offices, validated, and the configs generated from them (issue 8).

An inventory is a YAML file (`hierarchies:` and `offices:`) or a CSV file of offices with the same columns
(`services` and `predecessors` `;`-separated; a CSV uses DEFAULT_HIERARCHIES). load_inventory() validates it whole
and raises ConfigError with every problem and its YAML path or CSV line.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from agent.config import SERVICES

HELP = "validate the fleet inventory and generate per-office configs and Prometheus targets"

DEFAULT_HIERARCHIES: list[dict[str, Any]] = [
    {"name": "qn-2012", "levels": ["province", "district", "commune"], "until": date(2025, 6, 30)},
    {"name": "dn-2025", "levels": ["city", "commune"], "from": date(2025, 7, 1)},
]
"""The hierarchies of an inventory that names none (every CSV inventory): Quảng Nam 2012 and Đà Nẵng since July 2025."""

COLUMNS = ("org_id", "name", "level", "parent_id", "hierarchy", "admin_code", "agent", "wan_gateway", "services",
           "predecessors", "template")
"""The fields of an office, in file order (the CSV header)."""

_ORG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_HOST = re.compile(r"(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _org_id(value: str) -> str:
    if not _ORG_ID.fullmatch(value):
        raise ValueError(f"invalid org_id {value!r}: an electronic agency code such as 000.00.00.H49 "
                         "(letters, digits, '.', '_', '-'; at most 64)")
    return value


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"invalid name {value!r}: letters, digits, '_', '.', ':', '-'")
    return value


def _text(value: Any) -> Any:
    """Refuse numbers where text is meant (admin codes keep their leading zeros only as text)."""
    if isinstance(value, bool | int | float):
        raise ValueError(f"{value!r} must be text: quote it (\"{value}\"), leading zeros matter")
    return value


OrgId = Annotated[str, AfterValidator(_org_id)]
LevelName = Annotated[str, AfterValidator(_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class InventoryHierarchy(_Model):
    """A versioned list of levels, top first, in force from valid_from to valid_until (both inclusive, open if None)."""

    name: LevelName
    levels: Annotated[tuple[LevelName, ...], Field(min_length=1, max_length=8)]
    valid_from: date | None = Field(None, alias="from")
    valid_until: date | None = Field(None, alias="until")

    @field_validator("levels")
    @classmethod
    def _unique_levels(cls, levels: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(levels)) != len(levels):
            raise ValueError("levels must be unique")
        return levels

    def in_force(self, day: date) -> bool:
        """Whether `day` falls within the hierarchy's validity."""
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_until is None or day <= self.valid_until)


class InventoryOffice(_Model):
    """One office: identity, place in its hierarchy, how its agent is reached, and the services it runs or uses."""

    org_id: OrgId
    name: Annotated[str, Field(min_length=1, max_length=200)]
    level: LevelName
    parent_id: OrgId | None = None
    hierarchy: LevelName
    admin_code: Annotated[str, BeforeValidator(_text), Field(min_length=1, max_length=32)] | None = None
    agent: str | None = None
    """HOST:PORT that Prometheus scrapes; None: the office pushes (remote-write)."""
    wan_gateway: str | None = None
    services: tuple[str, ...] = ()
    predecessors: tuple[OrgId, ...] = ()
    """Offices of an earlier hierarchy merged into this one."""
    template: LevelName | None = None
    """The config template to generate from, when not the one named after the level."""

    @field_validator("agent")
    @classmethod
    def _agent_address(cls, value: str | None) -> str | None:
        if value is not None and not valid_address(value):
            raise ValueError(f"invalid agent address {value!r}: HOST:PORT, e.g. 10.49.0.10:9470 "
                             "([fd00::10]:9470 for IPv6)")
        return value

    @field_validator("wan_gateway")
    @classmethod
    def _gateway(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"invalid wan_gateway {value!r}: an IPv4 or IPv6 address") from None
        return value

    @field_validator("services")
    @classmethod
    def _services(cls, services: tuple[str, ...]) -> tuple[str, ...]:
        for service in services:
            if service not in SERVICES:
                raise ValueError(f"unknown service {service!r}; one of: {', '.join(SERVICES)}")
        _no_duplicates("service", services)
        return services

    @field_validator("predecessors")
    @classmethod
    def _predecessors(cls, predecessors: tuple[str, ...]) -> tuple[str, ...]:
        _no_duplicates("predecessor", predecessors)
        return predecessors

    @property
    def pull(self) -> bool:
        """Whether Prometheus scrapes this office's agent (else the agent pushes)."""
        return self.agent is not None


class Inventory:
    """A validated inventory: hierarchies by name and offices in file order, with lookups along the tree."""

    def __init__(self, hierarchies: dict[str, InventoryHierarchy], offices: list[InventoryOffice],
                 source: str = "") -> None:
        self.hierarchies = hierarchies
        self.offices = offices
        self.source = source
        self._by_id = {office.org_id: office for office in offices}
        self._successors = {old: office.org_id for office in offices for old in office.predecessors}
        self._children: dict[str, list[InventoryOffice]] = {}
        for office in offices:
            if office.parent_id is not None:
                self._children.setdefault(office.parent_id, []).append(office)

    def __contains__(self, org_id: object) -> bool:
        return org_id in self._by_id

    def __iter__(self) -> Iterator[InventoryOffice]:
        return iter(self.offices)

    def __len__(self) -> int:
        return len(self.offices)

    def office(self, org_id: str) -> InventoryOffice:
        """The office with this org_id; raises KeyError if the inventory has none."""
        try:
            return self._by_id[org_id]
        except KeyError:
            raise KeyError(f"office {org_id!r} is not in the inventory") from None

    def get(self, org_id: str) -> InventoryOffice | None:
        """The office with this org_id, or None."""
        return self._by_id.get(org_id)

    def hierarchy_for(self, day: date) -> InventoryHierarchy:
        """The hierarchy in force on `day`; raises LookupError if none is (validation forbids two)."""
        for hierarchy in self.hierarchies.values():
            if hierarchy.in_force(day):
                return hierarchy
        raise LookupError(f"no hierarchy of the inventory is in force on {day.isoformat()}")

    def successor(self, org_id: str) -> str | None:
        """The org_id of the office that lists `org_id` among its predecessors (it was merged into it), or None."""
        return self._successors.get(org_id)

    def district_of(self, org_id: str) -> str | None:
        """The office itself or its nearest ancestor at an intermediate level of its hierarchy (in qn-2012 the
        district), or None (the top level, its attached agencies, and every office of a two-level hierarchy)."""
        office = self.office(org_id)
        levels = self.hierarchies[office.hierarchy].levels
        middle = set(levels[1:-1])
        current: InventoryOffice | None = office
        while current is not None:
            if current.level in middle:
                return current.org_id
            current = self._by_id.get(current.parent_id) if current.parent_id else None
        return None

    def children(self, org_id: str) -> list[InventoryOffice]:
        """The offices whose parent is `org_id`, in file order."""
        return list(self._children.get(org_id, ()))

    def offices_in(self, hierarchy: str) -> list[InventoryOffice]:
        """The offices of one hierarchy, in file order."""
        return [office for office in self.offices if office.hierarchy == hierarchy]

    def ancestors(self, org_id: str) -> list[InventoryOffice]:
        """The parent, its parent, ... up to the root (validation forbids cycles)."""
        out = []
        current = self.office(org_id)
        while current.parent_id is not None:
            current = self._by_id[current.parent_id]
            out.append(current)
        return out


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Read and validate an inventory (CSV if the name ends in .csv, else YAML); raises ConfigError with every issue."""
    from agent.inventory_load import load

    return load(path)


def valid_address(value: str) -> bool:
    """Whether `value` is HOST:PORT (an IPv4 address or a host name, or [IPv6]) with a port 1-65535."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        return False
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipaddress.ip_address(host[1:-1]).version == 6
        except ValueError:
            return False
    if re.fullmatch(r"[0-9.]+", host):
        try:
            return ipaddress.ip_address(host).version == 4
        except ValueError:
            return False
    return bool(_HOST.fullmatch(host)) and not host.rstrip(".").rsplit(".", 1)[-1].isdigit()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the subcommand's flags: `check FILE` and `generate FILE --out DIR`."""
    sub = parser.add_subparsers(dest="inventory_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate an inventory; exit 0 if valid, 1 with every error otherwise")
    check.add_argument("file", help="inventory file (YAML, or CSV if it ends in .csv)")
    generate = sub.add_parser("generate", help="write per-office agent configs, Prometheus file_sd targets and "
                              "inventory recording rules")
    generate.add_argument("file", help="inventory file (YAML, or CSV if it ends in .csv)")
    generate.add_argument("--out", required=True, metavar="DIR", help="output directory (agents/, prometheus/ inside)")
    generate.add_argument("--templates", metavar="DIR", help="directory of config templates, one per level "
                          "(default: config/templates of this checkout)")
    generate.add_argument("--date", type=_day, metavar="DAY", help="only the offices of the hierarchy in force on "
                          "this day (YYYY-MM-DD; default: every office)")
    generate.add_argument("--config-url", metavar="URL", help="also write bootstrap/<org_id>.yaml for agents that "
                          "fetch their signed config from URL/<org_id>.yaml (egov-agent sign --dir publishes them)")
    generate.add_argument("--public-key", metavar="FILE", help="with --config-url: the signing public key here "
                          "(to validate the bootstraps)")
    generate.add_argument("--agent-public-key", metavar="PATH", help="with --config-url: where agents keep that "
                          "key (default /etc/egov-agent/config-signing.pub)")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the process exit code."""
    from agent.errors import ConfigError

    try:
        inventory = load_inventory(args.file)
    except ConfigError as err:
        print(err.render(), file=sys.stderr)
        return 1
    if args.inventory_command == "check":
        print(f"{args.file}: valid: {_summary(inventory)}")
        return 0
    from agent.inventory_generate import AGENT_PUBLIC_KEY, Bootstrap, GenerateError, default_templates, generate

    bootstrap = None
    if args.config_url is not None:
        if not args.config_url.startswith("https://") or args.public_key is None:
            print("egov-agent inventory: --config-url needs an https:// URL and --public-key FILE", file=sys.stderr)
            return 2
        bootstrap = Bootstrap(args.config_url, args.public_key, args.agent_public_key or AGENT_PUBLIC_KEY)
    try:
        report = generate(inventory, args.out, args.templates or default_templates(), args.date, bootstrap)
    except GenerateError as err:
        print(str(err), file=sys.stderr)
        return 1
    for warning in report.warnings:
        print(f"egov-agent inventory: warning: {warning}", file=sys.stderr)
    print(f"{args.out}: {report.summary()}")
    return 0


def _summary(inventory: Inventory) -> str:
    parts = []
    for name, hierarchy in inventory.hierarchies.items():
        offices = inventory.offices_in(name)
        if not offices:
            continue
        counts = ", ".join(f"{sum(o.level == level for o in offices)} {level}" for level in hierarchy.levels)
        pull = sum(office.pull for office in offices)
        parts.append(f"{name}: {len(offices)} offices ({counts}; {pull} pull, {len(offices) - pull} push)")
    return "; ".join(parts)


def _no_duplicates(what: str, values: tuple[str, ...]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid date {text!r}: YYYY-MM-DD") from None
