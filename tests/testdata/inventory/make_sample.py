"""Writes config/examples/inventory/quangnam.{yaml,csv}: Quảng Nam 2012 (qn-2012) plus a merged Đà Nẵng 2025 part.

Run from the checkout: `python tests/testdata/inventory/make_sample.py`. The names follow the real units; the org_ids
follow the shape of Decision 20/2020 codes (000.00.NN.H49 for agencies under the province, 000.CC.DD.H49 for a
commune CC of district DD) and the addresses are made up: documentation data, not a real registry.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
OUT = REPO / "config/examples/inventory"

DEPARTMENTS = [
    "Văn phòng UBND tỉnh", "Sở Nội vụ", "Sở Tư pháp", "Sở Kế hoạch và Đầu tư", "Sở Tài chính", "Sở Công Thương",
    "Sở Nông nghiệp và Phát triển nông thôn", "Sở Giao thông vận tải", "Sở Xây dựng", "Sở Tài nguyên và Môi trường",
    "Sở Thông tin và Truyền thông", "Sở Lao động - Thương binh và Xã hội", "Sở Văn hóa, Thể thao và Du lịch",
    "Sở Khoa học và Công nghệ", "Sở Giáo dục và Đào tạo", "Sở Y tế", "Thanh tra tỉnh", "Sở Ngoại vụ", "Ban Dân tộc",
    "Ban Quản lý các Khu kinh tế và Khu công nghiệp",
]

# (kind, name, GSO district code, communes); a commune name starting with "P " is a ward, "TT " a township.
DISTRICTS = [
    ("thành phố", "Tam Kỳ", "502", ["P An Mỹ", "P An Sơn", "P An Xuân", "P Hòa Hương", "P Hòa Thuận", "P Phước Hòa",
                                   "P Trường Xuân", "P An Phú", "P Tân Thạnh", "Tam Ngọc", "Tam Phú", "Tam Thăng",
                                   "Tam Thanh"]),
    ("thành phố", "Hội An", "503", ["P Minh An", "P Sơn Phong", "P Cẩm Phô", "P Tân An", "P Thanh Hà", "P Cẩm An",
                                   "P Cẩm Châu", "P Cẩm Nam", "P Cửa Đại", "Cẩm Thanh", "Cẩm Kim", "Cẩm Hà",
                                   "Tân Hiệp"]),
    ("huyện", "Tây Giang", "504", ["Lăng", "Ch'ơm", "Ga Ri", "A Xan", "Tr'hy", "A Nông", "Dang", "A Vương", "Bha Lê",
                                  "A Tiêng"]),
    ("huyện", "Đông Giang", "505", ["TT Prao", "Mà Cooih", "Tư", "Ba", "Sông Kôn", "Jơ Ngây", "A Ting", "Za Hung",
                                   "Kà Dăng", "A Rooi", "Tà Lu"]),
    ("huyện", "Đại Lộc", "506", ["TT Ái Nghĩa", "Đại Sơn", "Đại Lãnh", "Đại Hưng", "Đại Hồng", "Đại Đồng",
                                "Đại Quang", "Đại Nghĩa", "Đại Hiệp", "Đại Thạnh", "Đại Chánh", "Đại Tân", "Đại Phong",
                                "Đại Minh", "Đại Thắng", "Đại Cường", "Đại An", "Đại Hòa"]),
    ("thị xã", "Điện Bàn", "507", ["P Vĩnh Điện", "P Điện An", "P Điện Ngọc", "P Điện Nam Bắc", "P Điện Nam Trung",
                                  "P Điện Nam Đông", "P Điện Dương", "Điện Hòa", "Điện Thắng Bắc", "Điện Thắng Trung",
                                  "Điện Thắng Nam", "Điện Tiến", "Điện Hồng", "Điện Thọ", "Điện Phước",
                                  "Điện Phương", "Điện Minh", "Điện Quang", "Điện Trung", "Điện Phong"]),
    ("huyện", "Duy Xuyên", "508", ["TT Nam Phước", "Duy Thu", "Duy Phú", "Duy Tân", "Duy Hòa", "Duy Châu",
                                  "Duy Trinh", "Duy Sơn", "Duy Trung", "Duy Phước", "Duy Thành", "Duy Vinh",
                                  "Duy Nghĩa", "Duy Hải"]),
    ("huyện", "Quế Sơn", "509", ["TT Đông Phú", "TT Hương An", "Quế Xuân 1", "Quế Xuân 2", "Quế Phú", "Quế Cường",
                                "Quế Hiệp", "Quế Thuận", "Quế Mỹ", "Quế Châu", "Quế Minh", "Quế An", "Quế Phong",
                                "Quế Long"]),
    ("huyện", "Nam Giang", "510", ["TT Thạnh Mỹ", "Cà Dy", "Tà Bhing", "Tà Pơơ", "Zuôih", "Chà Vàl", "La Dêê",
                                  "Đắc Tôi", "Đắc Pre", "Đắc Pring", "La Êê", "Chơ Chun"]),
    ("huyện", "Phước Sơn", "511", ["TT Khâm Đức", "Phước Xuân", "Phước Hiệp", "Phước Hòa", "Phước Đức", "Phước Năng",
                                  "Phước Mỹ", "Phước Chánh", "Phước Công", "Phước Kim", "Phước Thành", "Phước Lộc"]),
    ("huyện", "Hiệp Đức", "512", ["TT Tân Bình", "Quế Thọ", "Bình Lâm", "Hiệp Hòa", "Hiệp Thuận", "Quế Lưu",
                                 "Thăng Phước", "Bình Sơn", "Sông Trà", "Phước Gia", "Phước Trà", "Quế Bình"]),
    ("huyện", "Thăng Bình", "513", ["TT Hà Lam", "Bình Nguyên", "Bình Quý", "Bình Định Bắc", "Bình Định Nam",
                                   "Bình Phục", "Bình Giang", "Bình Dương", "Bình Minh", "Bình Đào", "Bình Triều",
                                   "Bình Sa", "Bình Hải", "Bình Nam", "Bình Trung", "Bình Tú", "Bình An", "Bình Chánh",
                                   "Bình Quế", "Bình Phú", "Bình Lãnh", "Bình Trị"]),
    ("huyện", "Tiên Phước", "514", ["TT Tiên Kỳ", "Tiên Sơn", "Tiên Hà", "Tiên Cẩm", "Tiên Châu", "Tiên Lãnh",
                                   "Tiên Ngọc", "Tiên Hiệp", "Tiên Cảnh", "Tiên Mỹ", "Tiên Phong", "Tiên Thọ",
                                   "Tiên An", "Tiên Lộc", "Tiên Lập"]),
    ("huyện", "Bắc Trà My", "515", ["TT Trà My", "Trà Sơn", "Trà Kót", "Trà Nú", "Trà Đông", "Trà Dương",
                                   "Trà Giang", "Trà Bui", "Trà Đốc", "Trà Tân", "Trà Giác", "Trà Giáp", "Trà Ka"]),
    ("huyện", "Nam Trà My", "516", ["Trà Mai", "Trà Tập", "Trà Cang", "Trà Linh", "Trà Nam", "Trà Don", "Trà Leng",
                                   "Trà Dơn", "Trà Vinh", "Trà Vân"]),
    ("huyện", "Núi Thành", "517", ["TT Núi Thành", "Tam Xuân 1", "Tam Xuân 2", "Tam Anh Bắc", "Tam Anh Nam",
                                  "Tam Hiệp", "Tam Giang", "Tam Quang", "Tam Nghĩa", "Tam Hải", "Tam Sơn", "Tam Thạnh",
                                  "Tam Mỹ Đông", "Tam Mỹ Tây", "Tam Trà", "Tam Tiến", "Tam Hòa"]),
    ("huyện", "Phú Ninh", "518", ["TT Phú Thịnh", "Tam Thành", "Tam An", "Tam Đàn", "Tam Lộc", "Tam Phước",
                                 "Tam Vinh", "Tam Thái", "Tam Đại", "Tam Lãnh", "Tam Dân"]),
    ("huyện", "Nông Sơn", "519", ["Quế Trung", "Quế Ninh", "Quế Phước", "Quế Lộc", "Sơn Viên", "Phước Ninh",
                                 "Quế Lâm"]),
]

# Đà Nẵng 2025 (two levels): new communes and wards and the 2012 communes merged into each (by district and name).
MERGES = [
    ("phường", "Tam Kỳ", "Tam Kỳ", ["P An Mỹ", "P An Sơn", "P Hòa Hương", "P Tân Thạnh"]),
    ("phường", "Quảng Phú", "Tam Kỳ", ["P An Xuân", "P Hòa Thuận", "P Trường Xuân", "Tam Phú"]),
    ("phường", "Hương Trà", "Tam Kỳ", ["P Phước Hòa", "P An Phú", "Tam Ngọc", "Tam Thăng"]),
    ("phường", "Bàn Thạch", "Tam Kỳ", ["Tam Thanh"]),
    ("phường", "Hội An", "Hội An", ["P Minh An", "P Cẩm Phô", "P Sơn Phong"]),
    ("phường", "Hội An Đông", "Hội An", ["P Cẩm Châu", "P Cửa Đại", "Cẩm Thanh"]),
    ("phường", "Hội An Tây", "Hội An", ["P Tân An", "P Thanh Hà", "P Cẩm An", "P Cẩm Nam", "Cẩm Hà", "Cẩm Kim"]),
    ("xã", "Tân Hiệp", "Hội An", ["Tân Hiệp"]),
    ("xã", "Núi Thành", "Núi Thành", ["TT Núi Thành", "Tam Quang", "Tam Nghĩa", "Tam Hiệp", "Tam Giang"]),
    ("xã", "Tam Xuân", "Núi Thành", ["Tam Xuân 1", "Tam Xuân 2", "Tam Tiến"]),
    ("xã", "Tam Anh", "Núi Thành", ["Tam Anh Bắc", "Tam Anh Nam", "Tam Hòa"]),
    ("xã", "Tam Mỹ", "Núi Thành", ["Tam Mỹ Đông", "Tam Mỹ Tây", "Tam Trà", "Tam Sơn", "Tam Thạnh"]),
    ("xã", "Tam Hải", "Núi Thành", ["Tam Hải"]),
    ("xã", "Phú Ninh", "Phú Ninh", ["TT Phú Thịnh", "Tam Đàn", "Tam Thái", "Tam An"]),
    ("xã", "Tam Dân", "Phú Ninh", ["Tam Dân", "Tam Đại", "Tam Thành", "Tam Vinh"]),
    ("xã", "Tây Hồ", "Phú Ninh", ["Tam Lộc", "Tam Phước", "Tam Lãnh"]),
    ("phường", "Điện Bàn", "Điện Bàn", ["P Vĩnh Điện", "P Điện An", "Điện Phương"]),
    ("phường", "Điện Bàn Đông", "Điện Bàn", ["P Điện Nam Bắc", "P Điện Nam Trung", "P Điện Nam Đông",
                                             "P Điện Dương", "P Điện Ngọc"]),
    ("xã", "Trà My", "Bắc Trà My", ["TT Trà My", "Trà Sơn", "Trà Dương", "Trà Giang"]),
    ("xã", "Trà Leng", "Nam Trà My", ["Trà Leng", "Trà Dơn", "Trà Tập"]),
]

CITY_DEPARTMENTS = [  # Đà Nẵng's merged departments, with the Quảng Nam departments merged into them
    ("Sở Nội vụ thành phố Đà Nẵng", ["Sở Nội vụ", "Sở Lao động - Thương binh và Xã hội"]),
    ("Sở Tài chính thành phố Đà Nẵng", ["Sở Tài chính", "Sở Kế hoạch và Đầu tư"]),
    ("Sở Khoa học và Công nghệ thành phố Đà Nẵng", ["Sở Khoa học và Công nghệ", "Sở Thông tin và Truyền thông"]),
    ("Sở Xây dựng thành phố Đà Nẵng", ["Sở Xây dựng", "Sở Giao thông vận tải"]),
    ("Văn phòng UBND thành phố Đà Nẵng", ["Văn phòng UBND tỉnh"]),
]

PROVINCE_SERVICES = ["wan", "portal", "mail", "dms", "onestop", "publicservice", "dns", "host"]
AGENCY_SERVICES = ["wan", "portal", "mail", "dms", "onestop"]
COMMUNE_SERVICES = ["wan", "dms", "onestop"]
CAPITALS = {"Tam Kỳ", "Hội An", "Điện Bàn"}  # their wards sit on the city's LAN: scraped, not pushing


def main() -> None:
    """Write both sample files."""
    offices, groups = build()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "quangnam.yaml").write_text(render_yaml(groups), encoding="utf-8")
    (OUT / "quangnam.csv").write_text(render_csv(offices), encoding="utf-8")
    print(f"{len(offices)} offices written to {OUT}")


def build() -> tuple[list[dict[str, object]], list[tuple[str, list[dict[str, object]]]]]:
    """Every office, and the same offices in commented groups for the YAML file."""
    groups: list[tuple[str, list[dict[str, object]]]] = []
    province = {"org_id": "000.00.00.H49", "name": "UBND tỉnh Quảng Nam", "level": "province", "parent_id": None,
                "hierarchy": "qn-2012", "admin_code": "49", "agent": "10.49.0.10:9470", "wan_gateway": "10.49.0.1",
                "services": PROVINCE_SERVICES}
    departments = []
    by_name: dict[str, str] = {}
    for index, name in enumerate(DEPARTMENTS, start=1):
        org_id = f"000.00.{index:02d}.H49"
        by_name[name] = org_id
        departments.append({"org_id": org_id, "name": name, "level": "province", "parent_id": "000.00.00.H49",
                            "hierarchy": "qn-2012", "agent": f"10.49.1.{10 + index}:9470",
                            "wan_gateway": "10.49.1.1", "services": AGENCY_SERVICES, "template": "department"})
    groups.append(("qn-2012: the provincial People's Committee and its departments (provincial-level agencies, "
                   "attached to it)", [province, *departments]))
    districts = []
    communes: dict[tuple[str, str], str] = {}
    for number, (kind, name, code, _) in enumerate(DISTRICTS, start=1):
        district_id = f"000.00.{20 + number:02d}.H49"
        districts.append({"org_id": district_id, "name": f"UBND {kind} {name}", "level": "district",
                          "parent_id": "000.00.00.H49", "hierarchy": "qn-2012", "admin_code": code,
                          "agent": f"10.49.{20 + number}.10:9470", "wan_gateway": f"10.49.{20 + number}.1",
                          "services": AGENCY_SERVICES})
    groups.append(("qn-2012: the 18 districts, towns and cities (scraped by the province over the WAN)", districts))
    for number, (_, name, _, units) in enumerate(DISTRICTS, start=1):
        district_id = f"000.00.{20 + number:02d}.H49"
        rows = []
        for index, unit in enumerate(units, start=1):
            org_id = f"000.{index:02d}.{20 + number:02d}.H49"
            communes[(name, unit)] = org_id
            row: dict[str, object] = {"org_id": org_id, "name": f"UBND {_commune_name(unit)}", "level": "commune",
                                      "parent_id": district_id, "hierarchy": "qn-2012",
                                      "wan_gateway": f"10.{100 + number}.{index}.1",
                                      "services": COMMUNE_SERVICES}
            if name in CAPITALS:
                row = {**row, "agent": f"10.49.{20 + number}.{100 + index}:9470"}
                row = {key: row[key] for key in ("org_id", "name", "level", "parent_id", "hierarchy", "agent",
                                                 "wan_gateway", "services")}
            rows.append(row)
        groups.append((f"qn-2012: communes of {DISTRICTS[number - 1][0]} {name}", rows))
    city = {"org_id": "000.00.00.H48", "name": "UBND thành phố Đà Nẵng", "level": "city", "parent_id": None,
            "hierarchy": "dn-2025", "admin_code": "48", "agent": "10.48.0.10:9470", "wan_gateway": "10.48.0.1",
            "services": PROVINCE_SERVICES, "predecessors": ["000.00.00.H49"]}
    city_departments = []
    for index, (name, olds) in enumerate(CITY_DEPARTMENTS, start=1):
        city_departments.append({"org_id": f"000.00.{index:02d}.H48", "name": name, "level": "city",
                                 "parent_id": "000.00.00.H48", "hierarchy": "dn-2025",
                                 "agent": f"10.48.1.{10 + index}:9470", "wan_gateway": "10.48.1.1",
                                 "services": AGENCY_SERVICES, "predecessors": [by_name[old] for old in olds],
                                 "template": "department"})
    groups.append(("dn-2025 (since 1 July 2025): Quảng Nam is part of Đà Nẵng city; the city and its merged "
                   "departments", [city, *city_departments]))
    merged = []
    for index, (kind, name, district, olds) in enumerate(MERGES, start=1):
        merged.append({"org_id": f"000.00.{40 + index:02d}.H48", "name": f"UBND {kind} {name}", "level": "commune",
                       "parent_id": "000.00.00.H48", "hierarchy": "dn-2025",
                       "wan_gateway": f"10.48.{40 + index}.1", "services": COMMUNE_SERVICES,
                       "predecessors": [communes[(district, old)] for old in olds]})
    groups.append(("dn-2025: communes and wards formed by merging 2012 communes (predecessors); the other 2012 "
                   "communes are not mapped in this sample", merged))
    offices = [office for _, rows in groups for office in rows]
    return offices, groups


def render_yaml(groups: list[tuple[str, list[dict[str, object]]]]) -> str:
    """One office per line, in commented groups."""
    out = [
        "# Sample fleet inventory sized like Quảng Nam in 2012: the provincial People's Committee, 20 departments,",
        "# 18 districts and 244 communes (hierarchy qn-2012), and a part of the two-level Đà Nẵng city that replaced",
        "# it on 1 July 2025 (dn-2025) with the 2012 units merged into each new one (predecessors).",
        "# Documentation data: the names follow the real units, the org_ids follow the shape of Decision 20/2020",
        "# codes, the addresses are made up. Check it: `egov-agent inventory check FILE`; generate the per-office",
        "# configs, file_sd targets and rules: `egov-agent inventory generate FILE --out DIR` (see deploy/README.md).",
        "# Written by tests/testdata/inventory/make_sample.py; quangnam.csv holds the same offices.",
        "#",
        "# An office without `agent` pushes its data (remote-write); with it, Prometheus scrapes HOST:PORT.",
        "hierarchies:",
        "  - {name: qn-2012, levels: [province, district, commune], until: 2025-06-30}",
        "  - {name: dn-2025, levels: [city, commune], from: 2025-07-01}",
        "offices:",
    ]
    for title, rows in groups:
        out.append(f"  # {title}")
        for row in rows:
            body = {key: value for key, value in row.items() if value is not None or key == "parent_id"}
            text = yaml.safe_dump(body, allow_unicode=True, default_flow_style=True, sort_keys=False, width=10**6)
            out.append(f"  - {text.strip()}")
    return "\n".join(out) + "\n"


def render_csv(offices: list[dict[str, object]]) -> str:
    """The same offices as CSV, lists `;`-separated."""
    columns = ["org_id", "name", "level", "parent_id", "hierarchy", "admin_code", "agent", "wan_gateway", "services",
               "predecessors", "template"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for office in offices:
        writer.writerow([";".join(v) if isinstance(v := office.get(column), list) else ("" if v is None else v)
                         for column in columns])
    return buffer.getvalue()


def _commune_name(unit: str) -> str:
    if unit.startswith("P "):
        return f"phường {unit[2:]}"
    if unit.startswith("TT "):
        return f"thị trấn {unit[3:]}"
    return f"xã {unit}"


if __name__ == "__main__":
    main()
