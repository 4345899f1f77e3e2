"""The histogram metric type: MetricSink.add_histogram and its rendering as one text-format family."""

from __future__ import annotations

import asyncio
import math
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.errors import Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import COLLECTORS
from collectors.base import CollectorSpec, MetricSink, MetricSpec, Settings
from collectors.icmp import IcmpSettings
from exporters.exposition import Exposition

HIST = MetricSpec("egov_test_latency_seconds", "histogram", "Latency.", ("path",))
GAUGE = MetricSpec("egov_test_up", "gauge", "Up.")
BUCKETS = [(5e-05, 1), (0.0001, 1), (0.25, 3), (1.0, 4), (math.inf, 5)]


async def _probe(ctx: object, settings: Settings) -> bool:
    return True


SPEC = CollectorSpec("test", Settings, _probe, (HIST, GAUGE))


def test_add_histogram_writes_bucket_sum_and_count_samples() -> None:
    sink = MetricSink(SPEC.catalog)
    sink.add_histogram("egov_test_latency_seconds", BUCKETS, 2.5, "/a")
    rows = [(s.name, dict(s.labels), s.value) for s in sink.samples()]
    # le is written as Go's client writes it, so series match those of smokeping_prober
    assert [r[1].get("le") for r in rows] == ["5e-05", "0.0001", "0.25", "1", "+Inf", None, None]
    assert rows[-2:] == [("egov_test_latency_seconds_sum", {"path": "/a"}, 2.5),
                         ("egov_test_latency_seconds_count", {"path": "/a"}, 5.0)]
    assert {r[0] for r in rows[:5]} == {"egov_test_latency_seconds_bucket"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda sink: sink.add("egov_test_latency_seconds", 1.0, "/a"), "is a histogram: use add_histogram"),
        (lambda sink: sink.add_histogram("egov_test_up", BUCKETS, 1.0), "not declared as a histogram"),
        (lambda sink: sink.add_histogram("egov_test_latency_seconds", BUCKETS[:-1], 1.0, "/a"), "ending with \\+Inf"),
        (lambda sink: sink.add_histogram("egov_test_latency_seconds", BUCKETS, 1.0), "takes labels"),
        (lambda sink: sink.add("egov_test_latency_seconds_bucket", 1.0, "/a", "1"), "not declared"),
    ],
)
def test_misuse_is_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(MetricSink(SPEC.catalog))  # type: ignore[operator]


def test_exposition_writes_one_histogram_family_across_jobs() -> None:
    exposition = Exposition({"org_id": "000.00.20.H49", "level": "commune"})
    for target in ("a", "b"):
        sink = MetricSink(SPEC.catalog)
        sink.add_histogram("egov_test_latency_seconds", BUCKETS, 2.5, "/x")
        sink.add("egov_test_up", 1)
        job = Job("c", target, "m", "wan", 60.0, 5.0, SPEC, Settings())
        exposition.update(ProbeResult(job, True, Outcome.SUCCESS, 0.1, 1.0, sink.samples()))
    text = exposition.body().decode()
    assert text.count("# TYPE egov_test_latency_seconds histogram\n") == 1
    assert "_bucket histogram" not in text and "# TYPE egov_test_latency_seconds_" not in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    histogram = families["egov_test_latency_seconds"]
    assert histogram.type == "histogram"
    by_target: dict[str, list[tuple[str, str | None, float]]] = {}
    for sample in histogram.samples:
        by_target.setdefault(sample.labels["target"], []).append((sample.name, sample.labels.get("le"), sample.value))
    assert by_target["a"] == by_target["b"]
    assert by_target["a"][-2:] == [("egov_test_latency_seconds_sum", None, 2.5),
                                   ("egov_test_latency_seconds_count", None, 5.0)]


@pytest.mark.slow
async def test_icmp_output_passes_promtool() -> None:
    spec = COLLECTORS["icmp"]
    exposition = Exposition({"org_id": "000.00.20.H49", "level": "commune"})
    for target in ("127.0.0.1", "::1"):
        job = Job("wan", target, "wan_icmp", "wan", 30.0, 5.0, spec, IcmpSettings(packets=3, interval="10ms"))
        exposition.update(await run_job(job))
    body = exposition.body().decode()
    checked = await asyncio.to_thread(subprocess.run, ["promtool", "check", "metrics"], input=body,
                                      capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert body.count("# TYPE smokeping_response_duration_seconds histogram\n") == 1
