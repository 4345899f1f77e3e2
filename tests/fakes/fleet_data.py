"""Synthetic fleet data for the KPI report: an inventory, samples (OpenMetrics / VictoriaMetrics import) and the
KPI values, coverage and outages they must give, computed here straight from the samples (not with report code).

Two hierarchy versions: qn-2012 (province > district > commune, until 2025-06-30) and dn-2025 (city > commune, from
2025-07-01), whose offices list qn-2012 offices as predecessors. Data is written for the months given; an office
marked `silent` has no data at all, one marked `late_start` only from the 10th of each month, and in dn-2025 months
the old commune agents named in `stale_agents` still report under their old org_id (rolled up to the successor).

Run as a script to write files: `python tests/fakes/fleet_data.py OUT_DIR` (see --help).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SERVICES = ("wan", "portal", "dms", "onestop")
PORTAL_ITEMS = ("van_ban", "thu_tuc", "to_chuc", "lien_he", "english", "tim_kiem")
HOUR = 3600


@dataclass
class Office:
    org_id: str
    name: str
    level: str
    hierarchy: str
    parent_id: str | None = None
    predecessors: list[str] = field(default_factory=list)


@dataclass
class Series:
    name: str
    labels: dict[str, str]
    points: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Fleet:
    """Inventory, samples and the parameters the expected values need."""

    offices: list[Office]
    series: list[Series]
    months: list[str]
    probe_interval: int
    gauge_interval: int
    silent: set[str]
    late_start: set[str]
    stale_agents: dict[str, str]  # old org_id reporting in dn-2025 months -> its successor
    index: dict[tuple[str, tuple[tuple[str, str], ...]], Series] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------ files

    def inventory_yaml(self) -> str:
        """The inventory in issue 8's YAML shape."""
        lines = ["hierarchies:",
                 "  - {name: qn-2012, levels: [province, district, commune], until: 2025-06-30}",
                 "  - {name: dn-2025, levels: [city, commune], from: 2025-07-01}",
                 "offices:"]
        for o in self.offices:
            parent = o.parent_id or "null"
            lines.append(f"  - {{org_id: {o.org_id}, name: \"{o.name}\", level: {o.level}, parent_id: {parent}, "
                         f"hierarchy: {o.hierarchy}, services: [wan, portal, dms, onestop]"
                         + (f", predecessors: [{', '.join(o.predecessors)}]" if o.predecessors else "") + "}")
        return "\n".join(lines) + "\n"

    def openmetrics(self) -> Iterator[str]:
        """OpenMetrics text for `promtool tsdb create-blocks-from openmetrics` (seconds; ends with # EOF)."""
        by_name: dict[str, list[Series]] = defaultdict(list)
        for s in self.series:
            by_name[s.name].append(s)
        for name, group in by_name.items():
            yield f"# TYPE {name} gauge\n"
            for s in group:
                labels = _labels(s.labels)
                yield "".join(f"{name}{labels} {_value(v)} {t}\n" for t, v in s.points)
        yield "# EOF\n"

    def vm_import(self) -> Iterator[str]:
        """Prometheus text lines with millisecond timestamps for VictoriaMetrics' /api/v1/import/prometheus."""
        for s in self.series:
            labels = _labels(s.labels)
            yield "".join(f"{s.name}{labels} {_value(v)} {t * 1000}\n" for t, v in s.points)

    # ------------------------------------------------------------------------------------------ expected values

    def hierarchy_offices(self, hierarchy: str) -> list[Office]:
        return [o for o in self.offices if o.hierarchy == hierarchy]

    def owner(self, hierarchy: str) -> dict[str, str]:
        """Any org_id -> the office of `hierarchy` its figures belong to (itself or its successor, transitively)."""
        succ = {p: o.org_id for o in self.offices for p in o.predecessors}
        ids = {o.org_id for o in self.hierarchy_offices(hierarchy)}
        out = {}
        for o in self.offices:
            current, hops = o.org_id, 0
            while current not in ids and current in succ and hops < 10:
                current, hops = succ[current], hops + 1
            if current in ids:
                out[o.org_id] = current
        return out

    def expected(self, start: dt.datetime, end: dt.datetime, period: str, hierarchy: str) -> dict[str, dict]:
        """KPI id -> {"offices": {org_id: value|None}, "groups": {level or "all" (province-wide): value|None}}."""
        t0, t1 = int(start.timestamp()), int(end.timestamp())
        owner = self.owner(hierarchy)
        offices = self.hierarchy_offices(hierarchy)

        def in_window(s: Series) -> list[float]:
            return [v for t, v in s.points if t0 <= t < t1]

        def last(s: Series) -> float | None:
            values = in_window(s)
            return values[-1] if values else None

        # per office, a list of per-member-id figures
        avail: dict[str, dict[str, list[float]]] = {svc: defaultdict(list) for svc in SERVICES}
        loss: dict[str, list[float]] = defaultdict(list)
        items: dict[str, list[float]] = defaultdict(list)
        level34: dict[str, list[float]] = defaultdict(list)
        sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        present: dict[str, set[str]] = defaultdict(set)
        satisfaction: dict[str, list[float]] = defaultdict(list)
        iso: dict[str, list[float]] = defaultdict(list)
        per_member_probe: dict[tuple[str, str], list[float]] = defaultdict(list)
        portal_items_member: dict[str, list[float]] = defaultdict(list)
        for s in self.series:
            lab = s.labels
            who = lab.get("agency") or lab.get("org_id", "")
            office = owner.get(who)
            if office is None:
                continue
            if s.name == "probe_success":
                values = in_window(s)
                if values:
                    per_member_probe[(lab["service"], who)] += values
            elif s.name == "egov_icmp_loss_ratio":
                values = in_window(s)
                if values:
                    loss[office].append(sum(values) / len(values))
            elif s.name == "egov_portal_item_present":
                v = last(s)
                if v is not None:
                    portal_items_member[who].append(v)
            elif s.name == "egov_public_services" and lab["service_level"] in ("3", "4"):
                v = last(s)
                if v is not None:
                    level34[office].append(v)
                    present["level34"].add(office)
            elif s.name in ("egov_dms_documents", "egov_onestop_dossiers", "egov_onestop_dossiers_completed",
                            "egov_dms_documents_signed") and lab.get("month") == period:
                v = last(s)
                if v is None:
                    continue
                key = s.name + ":" + (lab.get("channel") or lab.get("timeliness") or "")
                sums[office][key] += v
                present[s.name].add(office)
            elif s.name == "egov_mail_active_accounts" and lab["window"] == "30d":
                v = last(s)
                if v is not None:
                    sums[office]["mail_active"] += v
            elif s.name == "egov_mail_accounts":
                v = last(s)
                if v is not None:
                    sums[office]["mail_accounts"] += v
                    present["mail"].add(office)
            elif s.name == "egov_register_satisfaction_ratio":
                v = last(s)
                if v is not None:
                    satisfaction[who].append(v)
            elif s.name == "egov_register_iso9001_certified":
                v = last(s)
                if v is not None:
                    iso[office].append(v)
        for (service, who), values in per_member_probe.items():
            avail[service][owner[who]].append(sum(values) / len(values))
        for who, values in portal_items_member.items():
            items[owner[who]].append(sum(values) / len(values))
        sat_office: dict[str, list[float]] = defaultdict(list)
        for who, values in satisfaction.items():
            sat_office[owner[who]].append(sum(values) / len(values))

        def mean(values: list[float]) -> float | None:
            return sum(values) / len(values) if values else None

        def ratio(office: str, num_keys: list[str], den_keys: list[str], name: str) -> tuple[float, float] | None:
            if office not in present[name]:
                return None
            num = sum(sums[office].get(k, 0.0) for k in num_keys)
            den = sum(sums[office].get(k, 0.0) for k in den_keys)
            return (num, den) if den > 0 else None

        dms = "egov_dms_documents"
        one = "egov_onestop_dossiers"
        done = "egov_onestop_dossiers_completed"
        ratio_kpis = {
            "edoc_electronic_share": ([f"{dms}:electronic"], [f"{dms}:electronic", f"{dms}:paper"], dms),
            "edoc_signed_share": (["egov_dms_documents_signed:"], [f"{dms}:electronic"], "egov_dms_documents_signed"),
            "dossiers_online_share": ([f"{one}:online"], [f"{one}:online", f"{one}:direct", f"{one}:postal"], one),
            "dossiers_on_time_share": ([f"{done}:early", f"{done}:on_time"],
                                       [f"{done}:early", f"{done}:on_time", f"{done}:late"], done),
        }
        out: dict[str, dict] = {}
        for kpi, (num_keys, den_keys, name) in ratio_kpis.items():
            pairs = {o.org_id: ratio(o.org_id, num_keys, den_keys, name) for o in offices}
            out[kpi] = _ratio_groups(pairs, offices)
        mail_pairs = {}
        for o in offices:
            den = sums[o.org_id].get("mail_accounts")
            mail_pairs[o.org_id] = ((sums[o.org_id].get("mail_active", 0.0), den)
                                    if o.org_id in present["mail"] and den else None)
        out["email_regular_use"] = _ratio_groups(mail_pairs, offices)
        adoption = {}
        for o in offices:
            if o.org_id in present[dms]:
                total = sums[o.org_id].get(f"{dms}:electronic", 0.0) + sums[o.org_id].get(f"{dms}:paper", 0.0)
                adoption[o.org_id] = 1.0 if total > 0 else 0.0
            else:
                adoption[o.org_id] = None
        out["dms_adoption"] = _mean_groups(adoption, offices)
        portal_levels = {"qn-2012": ("province", "district"), "dn-2025": ("city", "commune")}[hierarchy]
        portal_offices = [o for o in offices if o.level in portal_levels]
        operational = {}
        for o in portal_offices:
            members = avail["portal"].get(o.org_id)
            operational[o.org_id] = mean([1.0 if a >= 0.9 else 0.0 for a in members]) if members else None
        out["portal_operational"] = _mean_groups(operational, portal_offices)
        out["portal_content"] = _mean_groups({o.org_id: mean(items.get(o.org_id, [])) for o in portal_offices},
                                             portal_offices)
        out["iso9001_certified"] = _mean_groups({o.org_id: mean(iso.get(o.org_id, [])) for o in portal_offices},
                                                portal_offices)
        for svc, kpi in (("dms", "dms_availability"), ("onestop", "onestop_availability"), ("wan", "wan_availability")):
            out[kpi] = _mean_groups({o.org_id: mean(avail[svc].get(o.org_id, [])) for o in offices}, offices)
        out["wan_packet_loss"] = _mean_groups({o.org_id: mean(loss.get(o.org_id, [])) for o in offices}, offices)
        out["satisfaction"] = _mean_groups({o.org_id: mean(sat_office.get(o.org_id, [])) for o in offices}, offices)
        top = [o for o in offices if o.level in ("province", "city")]
        out["online_services_level34"] = _sum_groups(
            {o.org_id: (sum(level34[o.org_id]) if level34.get(o.org_id) else None) for o in top}, top)
        return out

    def expected_coverage(self, start: dt.datetime, end: dt.datetime, hierarchy: str, name: str,
                          match: dict[str, str], label: str = "org_id") -> dict[str, float]:
        """Office -> share of the window's hours [t-1h, t) with a sample of the selector; the max over members."""
        t0, t1 = int(start.timestamp()), int(end.timestamp())
        hours = (t1 - t0) // HOUR
        owner = self.owner(hierarchy)
        member_hours: dict[str, set[int]] = defaultdict(set)
        for s in self.series:
            if s.name != name or any(s.labels.get(k) != v for k, v in match.items()):
                continue
            who = s.labels.get(label, "")
            for t, _ in s.points:
                if t0 <= t < t1:
                    member_hours[who].add((t - t0) // HOUR)
        out: dict[str, float] = {o.org_id: 0.0 for o in self.hierarchy_offices(hierarchy)}
        for who, found in member_hours.items():
            office = owner.get(who)
            if office is not None:
                out[office] = max(out[office], len(found) / hours)
        return out

    def expected_outages(self, start: dt.datetime, end: dt.datetime, interval: int) -> list[dict]:
        """Runs of failed samples of probe_success (and up) inside the window, in buckets of `interval` seconds."""
        t0, t1 = int(start.timestamp()), int(end.timestamp())
        out = []
        for s in self.series:
            if s.name not in ("probe_success", "up"):
                continue
            buckets = sorted({(t - t0) // interval for t, v in s.points if t0 <= t < t1 and v == 0})
            runs: list[list[int]] = []
            for b in buckets:
                if runs and b == runs[-1][1] + 1:
                    runs[-1][1] = b
                else:
                    runs.append([b, b])
            for first, last_b in runs:
                out.append({"org_id": s.labels["org_id"],
                            "service": s.labels.get("service", "agent"),
                            "start": t0 + first * interval, "end": t0 + (last_b + 1) * interval,
                            "seconds": (last_b - first + 1) * interval})
        return out


# ---------------------------------------------------------------------------------------------- building


def build_fleet(*, months: list[str], departments: int = 3, districts: int = 3, communes_per_district: int = 5,
                new_communes: int = 8, probe_interval: int = 1800, gauge_interval: int = 6 * HOUR,
                seed: int = 9, only_hierarchy: str | None = None) -> Fleet:
    """Offices of both hierarchy versions and their samples for the calendar `months` (YYYY-MM), plus 3 days."""
    rng = random.Random(seed)
    offices: list[Office] = []
    qn_province = "000.00.00.H49"
    offices.append(Office(qn_province, "UBND tỉnh Quảng Nam", "province", "qn-2012"))
    for i in range(departments):
        offices.append(Office(f"000.01.{i:02d}.H49", f"Sở {i + 1} Quảng Nam", "province", "qn-2012", qn_province))
    old_communes = []
    for d in range(districts):
        district = f"000.{d + 10:02d}.00.H49"
        offices.append(Office(district, f"UBND huyện {d + 1}", "district", "qn-2012", qn_province))
        for c in range(communes_per_district):
            commune = f"000.{d + 10:02d}.{c + 1:02d}.H49"
            old_communes.append(commune)
            offices.append(Office(commune, f"UBND xã {d + 1}-{c + 1}", "commune", "qn-2012", district))
    city = "000.00.00.H17"
    offices.append(Office(city, "UBND thành phố Đà Nẵng", "city", "dn-2025", None, [qn_province]))
    for i in range(departments):
        offices.append(Office(f"000.01.{i:02d}.H17", f"Sở {i + 1} Đà Nẵng", "city", "dn-2025", city,
                              [f"000.01.{i:02d}.H49"]))
    share = max(1, len(old_communes) // max(1, new_communes - 2))
    new_ids = []
    for n in range(new_communes):
        preds = old_communes[n * share:(n + 1) * share] if n < new_communes - 2 else []
        org_id = f"000.50.{n + 1:02d}.H17"
        new_ids.append(org_id)
        offices.append(Office(org_id, f"UBND xã mới {n + 1}", "commune", "dn-2025", city, preds))
    if only_hierarchy is not None:
        offices = [o for o in offices if o.hierarchy == only_hierarchy]
        for o in offices:
            o.predecessors = []
    qn_ids = [o.org_id for o in offices if o.hierarchy == "qn-2012"]
    dn_ids = [o.org_id for o in offices if o.hierarchy == "dn-2025"]
    silent = {qn_ids[-1]} if qn_ids else set()
    silent |= {dn_ids[-1]} if dn_ids else set()
    late_start = {qn_ids[-2]} if len(qn_ids) > 1 else set()
    late_start |= {dn_ids[-2]} if len(dn_ids) > 1 else set()
    # The first new commune has no agent of its own yet: its first predecessor's agent still reports.
    stale = {}
    first_new = next((o for o in offices if o.hierarchy == "dn-2025" and o.level == "commune" and o.predecessors),
                     None)
    if first_new is not None:
        stale[first_new.predecessors[0]] = first_new.org_id
    fleet = Fleet(offices, [], months, probe_interval, gauge_interval, silent, late_start, stale)
    for month in months:
        _month(fleet, month, rng)
    return fleet


def _month(fleet: Fleet, month: str, rng: random.Random) -> None:
    year, mon = int(month[:4]), int(month[5:])
    start = dt.datetime(year, mon, 1, tzinfo=TZ)
    nxt = dt.datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=TZ)
    hierarchy = "qn-2012" if start.date() < dt.date(2025, 7, 1) else "dn-2025"
    t0, t1 = int(start.timestamp()), int(nxt.timestamp())
    top = next((o for o in fleet.offices if o.hierarchy == hierarchy and o.level in ("province", "city")
                and o.parent_id is None), None)
    reporters = [(o.org_id, o.level) for o in fleet.offices
                 if o.hierarchy == hierarchy and o.org_id not in fleet.silent
                 and not (hierarchy == "dn-2025" and o.org_id in fleet.stale_agents.values())]
    if hierarchy == "dn-2025":
        reporters += [(old, "commune") for old in fleet.stale_agents]
    for org_id, level in reporters:
        begin = t0 + (9 * 86400 if org_id in fleet.late_start else 0)
        office = {"org_id": org_id, "level": level}
        for service in SERVICES:
            target = f"https://{service}.{org_id}.example/"
            s = _series(fleet, "probe_success", {**office, "service": service, "check": f"{service}-check",
                                                 "module": "http_2xx" if service != "wan" else "icmp",
                                                 "target": target})
            down = _outages(rng, begin, t1, fleet.probe_interval, heavy=rng.random() < 0.3)
            for t in range(begin, t1, fleet.probe_interval):
                s.points.append((t, 0.0 if any(a <= t < b for a, b in down) else 1.0))
        loss = _series(fleet, "egov_icmp_loss_ratio", {**office, "service": "wan", "check": "wan-check",
                                                        "module": "icmp", "target": "10.49.0.1"})
        for t in range(begin, t1, fleet.gauge_interval):
            loss.points.append((t, round(rng.random() * 0.03, 4)))
        presence = {item: float(rng.random() < 0.8) for item in PORTAL_ITEMS}
        for item, value in presence.items():
            s = _series(fleet, "egov_portal_item_present", {**office, "service": "portal", "check": "portal-content",
                                                            "module": "portal", "target": "https://x/", "item": item})
            for t in range(begin, t1, fleet.gauge_interval):
                # The value at the end of the window counts; earlier values differ on purpose.
                s.points.append((t, value if t >= t1 - 5 * 86400 else 1.0 - value))
        up = _series(fleet, "up", {"org_id": org_id, "job": "egov-agent", "instance": f"{org_id}:9470"})
        down = _outages(rng, begin, t1, fleet.probe_interval, heavy=False)
        for t in range(begin, t1, fleet.probe_interval):
            up.points.append((t, 0.0 if any(a <= t < b for a, b in down) else 1.0))
        info = _series(fleet, "egov_office_info", {"org_id": org_id, "level": level, "hierarchy": hierarchy,
                                                   "name": _name(fleet, org_id), "parent_id": ""})
        for t in range(begin, t1, fleet.gauge_interval):
            info.points.append((t, 1.0))
    if top is None or top.org_id in fleet.silent:
        return
    central = {"org_id": top.org_id, "level": top.level}
    for level_name, count in (("2", 120), ("3", rng.randint(8, 20)), ("4", rng.randint(3, 10)),
                              ("toan_trinh", 40), ("mot_phan", 60)):
        s = _series(fleet, "egov_public_services", {**central, "service": "publicservice", "check": "catalogue",
                                                    "module": "portal", "target": "https://dvc/",
                                                    "service_level": level_name})
        for t in range(t0, t1, fleet.gauge_interval):
            s.points.append((t, float(count if t >= t1 - 2 * 86400 else count - 2)))
    agencies = [o.org_id for o in fleet.offices if o.hierarchy == hierarchy and o.org_id not in fleet.silent]
    # The mail server still maps an old domain to a predecessor's id: rolled up to the successor.
    agencies_mail = agencies + (list(fleet.stale_agents) if hierarchy == "dn-2025" else [])
    for agency in agencies:
        electronic = 0 if agency == agencies[1] else rng.randint(20, 400)
        paper = rng.randint(0, 200)
        signed = rng.randint(0, electronic)
        _growing(fleet, central, "egov_dms_documents", {"agency": agency, "month": month, "channel": "electronic"},
                 electronic, t0, t1)
        _growing(fleet, central, "egov_dms_documents", {"agency": agency, "month": month, "channel": "paper"},
                 paper, t0, t1)
        _growing(fleet, central, "egov_dms_documents_signed", {"agency": agency, "month": month}, signed, t0, t1)
        for channel in ("online", "direct", "postal"):
            _growing(fleet, central, "egov_onestop_dossiers", {"agency": agency, "month": month, "channel": channel},
                     rng.randint(0, 300), t0, t1)
        for timeliness in ("early", "on_time", "late"):
            _growing(fleet, central, "egov_onestop_dossiers_completed",
                     {"agency": agency, "month": month, "timeliness": timeliness}, rng.randint(0, 100), t0, t1)
        for survey in ("sipas", "online"):
            s = _series(fleet, "egov_register_satisfaction_ratio", {**central, "service": "other", "check": "register",
                                                                    "module": "register", "target": "register.csv",
                                                                    "agency": agency, "survey": survey})
            final = round(rng.uniform(0.6, 1.0), 3)
            for t in range(t0, t1, fleet.gauge_interval):
                s.points.append((t, final if t >= t1 - 3 * 86400 else 0.5))
        s = _series(fleet, "egov_register_iso9001_certified", {**central, "service": "other", "check": "register",
                                                               "module": "register", "target": "register.csv",
                                                               "agency": agency})
        certified = float(rng.random() < 0.7)
        for t in range(t0, t1, fleet.gauge_interval):
            s.points.append((t, certified))
    for agency in agencies_mail:
        accounts = rng.randint(10, 120)
        active = rng.randint(0, accounts)
        mail = {**central, "service": "mail", "check": "maillog", "module": "maillog", "target": "/var/log/mail.log"}
        for window, value in (("1d", active // 3), ("7d", active // 2), ("30d", active)):
            s = _series(fleet, "egov_mail_active_accounts", {**mail, "agency": agency, "window": window})
            for t in range(t0, t1, fleet.gauge_interval):
                s.points.append((t, float(value if t >= t1 - 4 * 86400 else accounts)))
        s = _series(fleet, "egov_mail_accounts", {**mail, "agency": agency})
        for t in range(t0, t1, fleet.gauge_interval):
            s.points.append((t, float(accounts)))


def _growing(fleet: Fleet, central: dict[str, str], name: str, extra: dict[str, str], final: int, t0: int,
             t1: int) -> None:
    """A month's count from the sql collector: grows through the month, and keeps growing after it (late rows)."""
    s = _series(fleet, name, {**central, "service": "dms" if "dms" in name else "onestop", "check": "sql",
                              "module": "sql", "target": "db", **extra})
    span = t1 - t0
    for t in range(t0, t1 + 3 * 86400, fleet.gauge_interval):
        s.points.append((t, float(round(final * min(t - t0, span - fleet.gauge_interval) /
                                        (span - fleet.gauge_interval)) + (7 if t >= t1 else 0))))


def _outages(rng: random.Random, begin: int, end: int, step: int, heavy: bool) -> list[tuple[int, int]]:
    out = []
    for _ in range(rng.randint(0, 3) + (6 if heavy else 0)):
        length = step * rng.randint(1, 30 if heavy else 6)
        start = begin + step * rng.randint(1, max(2, (end - begin - length) // step - 1))
        out.append((start, start + length))
    return out


def _series(fleet: Fleet, name: str, labels: dict[str, str]) -> Series:
    """The series with this name and labels (one object across months, so its samples stay in time order)."""
    key = (name, tuple(sorted(labels.items())))
    series = fleet.index.get(key)
    if series is None:
        series = fleet.index[key] = Series(name, labels)
        fleet.series.append(series)
    return series


def _name(fleet: Fleet, org_id: str) -> str:
    return next((o.name for o in fleet.offices if o.org_id == org_id), org_id)


def _ratio_groups(pairs: dict[str, tuple[float, float] | None], offices: list[Office]) -> dict:
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for o in offices:
        pair = pairs.get(o.org_id)
        if pair is not None:
            groups[o.level].append(pair)
            groups["all"].append(pair)
    values = {o.org_id: (p[0] / p[1] if (p := pairs.get(o.org_id)) else None) for o in offices}
    levels = {o.level for o in offices} | {"all"}
    return {"offices": values,
            "groups": {g: (sum(n for n, _ in groups[g]) / sum(d for _, d in groups[g]) if groups[g] else None)
                       for g in levels}}


def _mean_groups(values: dict[str, float | None], offices: list[Office]) -> dict:
    groups: dict[str, list[float]] = defaultdict(list)
    for o in offices:
        v = values.get(o.org_id)
        if v is not None:
            groups[o.level].append(v)
            groups["all"].append(v)
    levels = {o.level for o in offices} | {"all"}
    return {"offices": {o.org_id: values.get(o.org_id) for o in offices},
            "groups": {g: (sum(groups[g]) / len(groups[g]) if groups[g] else None) for g in levels}}


def _sum_groups(values: dict[str, float | None], offices: list[Office]) -> dict:
    groups: dict[str, list[float]] = defaultdict(list)
    for o in offices:
        v = values.get(o.org_id)
        if v is not None:
            groups[o.level].append(v)
            groups["all"].append(v)
    levels = {o.level for o in offices} | {"all"}
    return {"offices": {o.org_id: values.get(o.org_id) for o in offices},
            "groups": {g: (sum(groups[g]) if groups[g] else None) for g in levels}}


def _labels(labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                     for k, v in labels.items())
    return "{" + inner + "}"


def _value(v: float) -> str:
    return str(int(v)) if v == int(v) else repr(v)


def calendar_window(month: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a calendar month in Asia/Ho_Chi_Minh."""
    year, mon = int(month[:4]), int(month[5:])
    return dt.datetime(year, mon, 1, tzinfo=TZ), dt.datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=TZ)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--months", default="2026-09,2026-10")
    parser.add_argument("--communes", type=int, default=5, help="communes per district (qn-2012)")
    parser.add_argument("--new-communes", type=int, default=8)
    args = parser.parse_args()
    fleet = build_fleet(months=args.months.split(","), communes_per_district=args.communes,
                        new_communes=args.new_communes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inventory.yaml").write_text(fleet.inventory_yaml(), encoding="utf-8")
    with (args.out / "data.om").open("w", encoding="utf-8") as handle:
        handle.writelines(fleet.openmetrics())
    start, end = calendar_window(fleet.months[-1])
    hierarchy = "qn-2012" if start.date() < dt.date(2025, 7, 1) else "dn-2025"
    expected = fleet.expected(start, end, fleet.months[-1], hierarchy)
    (args.out / "expected.json").write_text(json.dumps(expected, indent=1), encoding="utf-8")
    print(f"{len(fleet.offices)} offices, {sum(len(s.points) for s in fleet.series)} samples -> {args.out}")


if __name__ == "__main__":
    main()
