"""The offices a report covers: from the inventory (hierarchy versions, predecessors) or from egov_office_info."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.inventory import Inventory


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """A versioned list of levels, top first, valid from/until (inclusive; None = open)."""

    name: str
    levels: tuple[str, ...]
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None


@dataclass(frozen=True, slots=True)
class Office:
    """One office of the inventory."""

    org_id: str
    name: str
    level: str
    hierarchy: str
    parent_id: str | None = None
    predecessors: tuple[str, ...] = ()


@dataclass
class Fleet:
    """The offices of one hierarchy version, and how any org_id seen in the data maps onto them."""

    hierarchy: Hierarchy
    offices: list[Office]
    successors: dict[str, str] = field(default_factory=dict)
    """predecessor org_id -> the office (of any version) that lists it as a predecessor"""

    def __post_init__(self) -> None:
        self._ids = {o.org_id: o for o in self.offices}

    def resolve(self, org_id: str) -> str | None:
        """The office a figure labelled `org_id` belongs to: itself, or the successor it was merged into."""
        seen: set[str] = set()
        current = org_id
        while current not in self._ids:
            if current in seen or current not in self.successors:
                return None
            seen.add(current)
            current = self.successors[current]
        return current

    def office(self, org_id: str) -> Office:
        """The office with this id."""
        return self._ids[org_id]


def fleet_for(inventory: Inventory, day: dt.date) -> Fleet:
    """The offices of the hierarchy in force on `day`; predecessors of any version roll up to them."""
    version = inventory.hierarchy_for(day)
    hierarchy = Hierarchy(version.name, tuple(version.levels), version.valid_from, version.valid_until)
    offices = [Office(o.org_id, o.name, o.level, o.hierarchy, o.parent_id, tuple(o.predecessors))
               for o in inventory.offices_in(version.name)]
    successors = {old: o.org_id for o in inventory.offices for old in o.predecessors}
    return Fleet(hierarchy, offices, successors)
