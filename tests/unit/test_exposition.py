"""The hand-written exposition: valid text format, grouped families, cached body, escaping, removal."""

from __future__ import annotations

import gzip
import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.errors import Outcome
from agent.runner import Job, ProbeResult
from collectors.base import CollectorSpec, MetricSpec, Sample, Settings
from exporters.exposition import Exposition, escape_label_value, format_value

SPECS = (
    MetricSpec("egov_test_bytes_total", "counter", "Bytes seen.", ("device",)),
    MetricSpec("egov_test_up", "gauge", "Up or not.\nSecond line."),
)


async def _probe(ctx: object, settings: Settings) -> bool:
    return True


SPEC = CollectorSpec("test", Settings, _probe, SPECS)


def result(check: str, target: str, success: bool = True, samples: list[Sample] | None = None) -> ProbeResult:
    job = Job(check, target, "mod", "wan", 60.0, 5.0, SPEC, Settings())
    return ProbeResult(job, success, Outcome.SUCCESS if success else Outcome.TIMEOUT, 0.25, 1.0,
                       samples if samples is not None else [
                           Sample("egov_test_bytes_total", (("device", "eth0"),), 1e6),
                           Sample("egov_test_up", (), 1.0),
                       ])


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        family.name: [(dict(s.labels), s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_every_series_has_job_and_office_labels() -> None:
    exposition = Exposition({"org_id": "000.00.20.H49", "level": "commune"})
    exposition.update(result("wan", "10.0.0.1"))
    families = parse(exposition.body().decode())
    assert set(families) == {"egov_test_bytes", "egov_test_up", "probe_success", "probe_duration_seconds"}
    for samples in families.values():
        for labels, _ in samples:
            assert labels["org_id"] == "000.00.20.H49"
            assert labels["level"] == "commune"
            assert (labels["check"], labels["module"], labels["service"], labels["target"]) == (
                "wan", "mod", "wan", "10.0.0.1")
    assert families["egov_test_bytes"][0][0]["device"] == "eth0"
    assert families["egov_test_bytes"][0][1] == 1e6
    assert families["probe_duration_seconds"][0][1] == 0.25


def test_families_are_contiguous_with_one_header_each() -> None:
    exposition = Exposition({})
    for index in range(5):
        exposition.update(result("c", f"t{index}", success=index % 2 == 0))
    text = exposition.body().decode()
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names)) == 4
    assert 'probe_success{check="c",module="mod",service="wan",target="t1"} 0' in text
    assert "# HELP egov_test_up Up or not.\\nSecond line.\n" in text
    order = [line.split("{")[0] for line in text.splitlines() if not line.startswith("#")]
    assert order == sorted(order, key=lambda name: sorted({*order}).index(name))


def test_update_replaces_and_remove_forgets() -> None:
    exposition = Exposition({})
    exposition.update(result("c", "a"))
    exposition.update(result("c", "b"))
    exposition.update(result("c", "a", success=False, samples=[]))
    families = parse(exposition.body().decode())
    assert "egov_test_up" in families and len(families["egov_test_up"]) == 1
    assert sorted(v for _, v in families["probe_success"]) == [0, 1]
    exposition.remove(("c", "b"))
    families = parse(exposition.body().decode())
    assert "egov_test_up" not in families
    assert [labels["target"] for labels, _ in families["probe_success"]] == ["a"]


def test_body_is_cached_until_a_result_arrives() -> None:
    exposition = Exposition({})
    exposition.update(result("c", "a"))
    first = exposition.body()
    assert exposition.body() is first
    exposition.update(result("c", "a"))
    assert exposition.body() is not first
    assert gzip.decompress(exposition.gzipped_body()) == exposition.body()


def test_label_values_are_escaped() -> None:
    exposition = Exposition({"org_id": 'a"b', "level": "x\\y"})
    exposition.update(result("c", 'http://host/"q"\nline', samples=[]))
    families = parse(exposition.body().decode())
    labels = families["probe_success"][0][0]
    assert labels["target"] == 'http://host/"q"\nline'
    assert labels["org_id"] == 'a"b'
    assert labels["level"] == "x\\y"
    assert escape_label_value("plain") == "plain"


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (0.0, "0"), (-3.0, "-3"), (0.25, "0.25"), (1e20, "1e+20"), (math.nan, "NaN"),
     (math.inf, "+Inf"), (-math.inf, "-Inf"), (1795786061.4651942, "1795786061.4651942")],
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text
    assert float(text) == value or math.isnan(value)


def test_run_counters_show_a_flap_between_scrapes() -> None:
    from agent.store import ResultStore

    store = ResultStore()
    exposition = Exposition({})
    store.subscribe(exposition.update, exposition.remove)
    for index, success in enumerate([True, False, False, True]):
        outcome_result = result("c", "a", success=success)
        outcome_result.finished_at = 100.0 + index
        store.put(outcome_result)
    families = parse(exposition.body().decode())
    runs = {labels["outcome"]: value for labels, value in families["egov_probe_runs"]}
    assert runs == {"success": 2, "timeout": 2}
    assert families["egov_probe_state_changes"][0][1] == 2
    assert families["egov_probe_last_change_timestamp_seconds"][0][1] == 103.0
    assert families["probe_success"][0][1] == 1
