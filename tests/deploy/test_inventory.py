"""The fleet inventory: the sample validates, invalid inventories give their exact messages, and the lookups."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml

from agent.errors import ConfigError
from agent.inventory import Inventory, load_inventory, valid_address

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "config/examples/inventory/quangnam.yaml"
SAMPLE_CSV = REPO / "config/examples/inventory/quangnam.csv"
INVALID = sorted(p for p in (REPO / "tests/testdata/inventory/invalid").iterdir() if p.suffix in (".yaml", ".csv"))

SMALL = """\
hierarchies:
  - {name: qn-2012, levels: [province, district, commune], until: 2025-06-30}
  - {name: dn-2025, levels: [city, commune], from: 2025-07-01}
offices:
  - {org_id: P, name: UBND tỉnh, level: province, hierarchy: qn-2012, wan_gateway: 10.49.0.1}
  - {org_id: S1, name: Sở Nội vụ, level: province, parent_id: P, hierarchy: qn-2012}
  - {org_id: D1, name: UBND huyện Núi Thành, level: district, parent_id: P, hierarchy: qn-2012}
  - {org_id: C1, name: UBND xã Tam Xuân 1, level: commune, parent_id: D1, hierarchy: qn-2012}
  - {org_id: C2, name: UBND xã Tam Xuân 2, level: commune, parent_id: D1, hierarchy: qn-2012}
  - {org_id: C3, name: UBND xã Tam Hải, level: commune, parent_id: D1, hierarchy: qn-2012}
  - {org_id: T, name: UBND thành phố, level: city, hierarchy: dn-2025, predecessors: [P]}
  - {org_id: N1, name: UBND xã Tam Xuân, level: commune, parent_id: T, hierarchy: dn-2025, predecessors: [C1, C2]}
"""


def expected_messages(path: Path) -> list[str]:
    """The `# expect: ...` lines at the top of a test inventory."""
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    return [line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: ")]


@pytest.fixture
def small(tmp_path: Path) -> Inventory:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL, encoding="utf-8")
    return load_inventory(str(path))


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_inventory_reports_exact_messages(path: Path) -> None:
    expected = expected_messages(path)
    assert expected, f"{path} has no '# expect:' line"
    with pytest.raises(ConfigError) as caught:
        load_inventory(str(path))
    assert [str(issue) for issue in caught.value.issues] == expected
    assert all(line.startswith(f"{path}: line ") for line in caught.value.render().splitlines())


def test_sample_is_sized_like_the_province() -> None:
    # Counted from the YAML itself, not through the loader.
    offices = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))["offices"]
    old = [o for o in offices if o["hierarchy"] == "qn-2012"]
    committee = [o for o in old if o["level"] == "province" and o["parent_id"] is None]
    departments = [o for o in old if o["level"] == "province" and o["parent_id"] is not None]
    assert len(committee) == 1
    assert 18 <= len(departments) <= 22
    assert sum(o["level"] == "district" for o in old) == 18
    assert sum(o["level"] == "commune" for o in old) == 244
    assert all(o["name"].startswith(("UBND xã ", "UBND phường ", "UBND thị trấn "))
               for o in old if o["level"] == "commune")
    merged = [o for o in offices if o["hierarchy"] == "dn-2025" and o["level"] == "commune"]
    assert len(merged) >= 10
    assert all(len(o["predecessors"]) >= 1 for o in merged)
    assert sum(len(o["predecessors"]) >= 2 for o in merged) >= 10

    inventory = load_inventory(SAMPLE)  # a Path works too
    assert inventory.source == str(SAMPLE)
    assert len(inventory) == len(offices)
    assert [o.org_id for o in inventory] == [o["org_id"] for o in offices]


def test_sample_csv_holds_the_same_offices() -> None:
    from_yaml, from_csv = load_inventory(str(SAMPLE)), load_inventory(str(SAMPLE_CSV))
    assert from_csv.offices == from_yaml.offices
    assert from_csv.hierarchies == from_yaml.hierarchies


def test_sample_successors_follow_the_predecessors() -> None:
    inventory = load_inventory(str(SAMPLE))
    raw = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))["offices"]
    expected = {old: o["org_id"] for o in raw for old in o.get("predecessors", [])}
    assert expected, "the sample must merge some communes, or the loop below checks nothing"
    for office in inventory:
        assert inventory.successor(office.org_id) == expected.get(office.org_id)
    assert inventory.successor("000.00.00.H49") == "000.00.00.H48"


def test_sample_districts() -> None:
    inventory = load_inventory(str(SAMPLE))
    raw = {o["org_id"]: o for o in yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))["offices"]}
    for org_id, office in raw.items():
        if office["level"] == "commune" and office["hierarchy"] == "qn-2012":
            assert inventory.district_of(org_id) == office["parent_id"]
        elif office["level"] == "district":
            assert inventory.district_of(org_id) == org_id
        else:  # the province, its departments, and every office of the two-level dn-2025
            assert inventory.district_of(org_id) is None


def test_lookups(small: Inventory) -> None:
    assert small.office("C1").name == "UBND xã Tam Xuân 1"
    assert "C1" in small and "X" not in small
    assert small.get("X") is None
    with pytest.raises(KeyError, match="'X' is not in the inventory"):
        small.office("X")
    assert [o.org_id for o in small.children("D1")] == ["C1", "C2", "C3"]
    assert [o.org_id for o in small.ancestors("C3")] == ["D1", "P"]
    assert [o.org_id for o in small.offices_in("dn-2025")] == ["T", "N1"]
    assert small.office("N1").predecessors == ("C1", "C2")
    assert small.office("C1").pull is False


def test_successor(small: Inventory) -> None:
    assert small.successor("C1") == "N1"
    assert small.successor("C2") == "N1"
    assert small.successor("P") == "T"
    assert small.successor("C3") is None  # not merged in this inventory
    assert small.successor("N1") is None
    assert small.successor("unknown") is None


def test_district_of(small: Inventory) -> None:
    assert small.district_of("C1") == "D1"
    assert small.district_of("D1") == "D1"
    assert small.district_of("P") is None
    assert small.district_of("S1") is None  # a department: attached to the province, in no district
    assert small.district_of("N1") is None  # two levels: no district
    with pytest.raises(KeyError):
        small.district_of("X")


def test_hierarchy_for(small: Inventory) -> None:
    assert small.hierarchy_for(date(2012, 3, 29)).name == "qn-2012"
    assert small.hierarchy_for(date(2025, 6, 30)).name == "qn-2012"
    assert small.hierarchy_for(date(2025, 7, 1)).name == "dn-2025"
    assert small.hierarchy_for(date(2040, 1, 1)).levels == ("city", "commune")
    hierarchy = small.hierarchies["dn-2025"]
    assert (hierarchy.valid_from, hierarchy.valid_until) == (date(2025, 7, 1), None)


def test_hierarchy_for_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "gap.yaml"
    path.write_text(SMALL.replace("from: 2025-07-01", "from: 2025-08-01"), encoding="utf-8")
    inventory = load_inventory(str(path))
    assert inventory.hierarchy_for(date(2025, 8, 1)).name == "dn-2025"
    with pytest.raises(LookupError, match=r"no hierarchy .* in force on 2025-07-15"):
        inventory.hierarchy_for(date(2025, 7, 15))


def test_hierarchies_default_to_the_two_of_quang_nam(tmp_path: Path) -> None:
    path = tmp_path / "offices-only.yaml"
    path.write_text(SMALL[SMALL.index("offices:"):], encoding="utf-8")
    inventory = load_inventory(str(path))
    assert list(inventory.hierarchies) == ["qn-2012", "dn-2025"]
    assert inventory.hierarchies["qn-2012"].valid_until == date(2025, 6, 30)


def test_csv_from_a_spreadsheet(tmp_path: Path) -> None:
    """Excel's 'CSV UTF-8' writes a byte-order mark and CRLF; cells may hold spaces and quoted newlines."""
    rows = ["org_id,name,level,parent_id,hierarchy,admin_code,agent,services,predecessors",
            '000.00.00.H49,"UBND tỉnh\nQuảng Nam",province,,qn-2012,049, 10.49.0.10:9470 ,wan; portal ,',
            "000.00.37.H49,UBND huyện Núi Thành,district,000.00.00.H49,qn-2012,517,,wan,"]
    path = tmp_path / "sheet.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode("utf-8") + b"\r\n")
    inventory = load_inventory(str(path))
    first = inventory.office("000.00.00.H49")
    assert first.name == "UBND tỉnh\nQuảng Nam"
    assert (first.admin_code, first.agent, first.services) == ("049", "10.49.0.10:9470", ("wan", "portal"))
    assert inventory.office("000.00.37.H49").agent is None


def test_csv_errors_name_the_line_after_a_multiline_cell(tmp_path: Path) -> None:
    rows = ["org_id,name,level,parent_id,hierarchy",
            '000.00.00.H49,"UBND tỉnh\nQuảng Nam\n(tỉnh)",province,,qn-2012',
            "000.00.37.H49,UBND huyện Núi Thành,district,000.00.99.H49,qn-2012"]
    path = tmp_path / "sheet.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_inventory(str(path))
    assert [str(i) for i in caught.value.issues] == [
        "line 5: parent_id: parent '000.00.99.H49' is not in the inventory"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_inventory(str(tmp_path / "nope.yaml"))
    assert caught.value.render() == f"{tmp_path / 'nope.yaml'}: cannot read inventory: No such file or directory"


@pytest.mark.parametrize(("address", "valid"), [
    ("10.49.0.10:9470", True), ("[fd00::10]:9470", True), ("agent.quangnam.gov.vn:9470", True),
    ("localhost:1", True), ("10.49.0.10:65535", True),
    ("10.49.0.10", False), ("10.49.0.10:0", False), ("10.49.0.10:65536", False), ("10.49.0.256:9470", False),
    ("fd00::10:9470", False), ("[10.49.0.10]:9470", False), ("http://a:1", False), (":9470", False),
    ("a..b:1", False), ("-a:1", False), ("10.49.0:9470", False), ("a b:1", False),
    ("a:\uff19\uff14\uff17\uff10", False),  # fullwidth digits
])
def test_agent_addresses(address: str, valid: bool) -> None:
    assert valid_address(address) is valid


def test_check_command() -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "inventory", "check", str(SAMPLE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{SAMPLE}: valid: qn-2012: 283 offices (21 province, 18 district, 244 commune;")


@pytest.mark.parametrize("path", [p for p in INVALID if p.name in ("several-errors.yaml", "csv-several-errors.csv")],
                         ids=lambda p: p.name)
def test_check_command_lists_every_error(path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "inventory", "check", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [f"{path}: {message}" for message in expected_messages(path)]


def test_command_usage_errors() -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "inventory"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert re.search(r"required: ACTION|the following arguments are required", done.stderr)
    done = subprocess.run([sys.executable, "-m", "agent", "inventory", "generate", str(SAMPLE), "--out", "x",
                           "--date", "2025-13-01"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "invalid date '2025-13-01': YYYY-MM-DD" in done.stderr


def test_sample_files_are_what_the_script_writes() -> None:
    import importlib.util

    script = REPO / "tests/testdata/inventory/make_sample.py"
    spec = importlib.util.spec_from_file_location("make_sample", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    offices, groups = module.build()
    assert SAMPLE.read_text(encoding="utf-8") == module.render_yaml(groups)
    assert SAMPLE_CSV.read_text(encoding="utf-8") == module.render_csv(offices)
