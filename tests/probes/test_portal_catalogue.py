"""The publicservice kind: counts of online public services by level from a JSON API and from an HTML table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fakes.portal_site import Resource, Site, Sites, catalogue_html, catalogue_json, services
from pydantic import TypeAdapter

from agent.config import module_model, parse_config
from agent.errors import ConfigError, Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import COLLECTORS

SPEC = COLLECTORS["publicservice"]
CATALOGUE = services(157)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    running = Sites()
    served = running.serve(Site({
        "/api/thong-ke": Resource(catalogue_json(CATALOGUE), content_type="application/json"),
        "/danh-muc": Resource(catalogue_html(CATALOGUE)),
        "/api/hong": Resource(b"{not json", content_type="application/json"),
    }))
    yield served
    running.close()


def expected() -> dict[str, float]:
    """Counts by level, computed from the catalogue itself (not from what the fake serves)."""
    counts = {"2": 0.0, "3": 0.0, "4": 0.0, "toan_trinh": 0.0, "mot_phan": 0.0}
    for service in CATALOGUE:
        counts[service["level"]] += 1
        if service["mode"]:
            counts[service["mode"]] += 1
    return counts


async def probe(url: str, **settings: Any) -> tuple[ProbeResult, dict[str, float]]:
    module = TypeAdapter(module_model()).validate_python(
        {"kind": "publicservice", "timeout": "5s", "publicservice": settings})
    result = await run_job(Job("dvc", url, "dvc_catalogue", "publicservice", 60.0, 5.0, SPEC, module.publicservice))
    return result, {s.name + ("{" + ",".join(v for _, v in s.labels) + "}" if s.labels else ""): s.value
                    for s in result.samples}


def levels(got: dict[str, float]) -> dict[str, float]:
    return {key[len("egov_public_services{"):-1]: value for key, value in got.items()
            if key.startswith("egov_public_services{")}


async def test_counts_from_a_json_api(site: Site) -> None:
    result, got = await probe(site.url + "/api/thong-ke", levels={
        2: {"json_path": "data.muc_do.muc_do_2"}, "3": {"json_path": "data.muc_do.muc_do_3"},
        "4": {"json_path": "data.muc_do.muc_do_4"}, "toan_trinh": {"json_path": "data.toan_trinh"},
        "mot_phan": {"json_path": "$.data.mot_phan"}})  # a numeric string counts too
    assert result.success, result.error
    assert levels(got) == expected()
    assert sum(expected()[level] for level in ("2", "3", "4")) == len(CATALOGUE)
    assert got["probe_http_status_code"] == 200
    assert "egov_http_extracted_value{service_level_2}" not in got


async def test_counts_from_an_html_table(site: Site) -> None:
    result, got = await probe(site.url + "/danh-muc", levels={
        "2": {"count_regex": r"Mức độ 2<"}, "3": {"count_regex": r"Mức độ 3<"}, "4": {"count_regex": r"Mức độ 4<"},
        "toan_trinh": {"count_regex": r'class="hinh-thuc">Toàn trình<'},
        "mot_phan": {"count_regex": r'class="hinh-thuc">Một phần<'}},
        extract=[{"name": "rows", "count_regex": "<tr>"}])
    assert result.success, result.error
    assert levels(got) == expected()
    assert got["egov_http_extracted_value{rows}"] == len(CATALOGUE)


async def test_a_missing_count_fails_the_run_and_keeps_the_others(site: Site) -> None:
    result, got = await probe(site.url + "/api/thong-ke", levels={
        "toan_trinh": {"json_path": "data.toan_trinh"}, "4": {"json_path": "data.muc_do.khong_co"}})
    assert result.outcome is Outcome.MISMATCH
    assert result.error == "no count found for service level 4 (the run log says why)"
    assert levels(got) == {"toan_trinh": expected()["toan_trinh"]}
    assert any("data.muc_do.khong_co" in line.message for line in result.lines)
    result, got = await probe(site.url + "/api/hong", levels={"4": {"json_path": "data.x"}})
    assert result.outcome is Outcome.MISMATCH
    assert levels(got) == {}


async def test_http_failures_are_the_http_kinds(site: Site) -> None:
    result, got = await probe(site.url + "/khong-co", levels={"4": {"json_path": "data.x"}})
    assert result.outcome is Outcome.MISMATCH
    assert result.error == "status code 404, want 2xx"
    assert got["probe_http_status_code"] == 404


def test_config_rules() -> None:
    office = "office: {org_id: 000.00.00.H49, name: t, level: province}\n"
    cases = {
        "{}": "levels: missing required key",
        "{levels: {}}": "at least 1 item",
        "{levels: {5: {json_path: a}}}": "Input should be '2', '3', '4', 'toan_trinh' or 'mot_phan'",
        "{levels: {4: {json_path: a, count_regex: b}}}": "give exactly one of json_path and count_regex",
        "{levels: {4: {json_path: 'a..b'}}}": "invalid json_path",
        "{levels: {4: {count_regex: a}}, extract: [{name: service_level_4, count_regex: a}]}": "reserved for levels",
    }
    for body, message in cases.items():
        text = f"{office}modules:\n  c: {{kind: publicservice, publicservice: {body}}}\n"
        with pytest.raises(ConfigError) as caught:
            parse_config(text.encode(), "agent.yaml")
        assert message in caught.value.render(), caught.value.render()
