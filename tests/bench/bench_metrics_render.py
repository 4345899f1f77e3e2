"""/metrics render time for 1k and 10k series: the agent's Exposition against prometheus_client, and over HTTP.

In-process (same synthetic series on both sides, checked to parse to the same samples):
  - agent: exporters.exposition.Exposition fed with synthetic ProbeResults; body() timed right after an
    update() (cache miss: the text is joined again), body() again (cache hit), gzipped_body() after an update
    (what a Prometheus scrape with Accept-Encoding: gzip costs), and update() itself (paid once per run);
  - prometheus_client: generate_latest() over a dedicated CollectorRegistry, (a) with a custom collector that
    yields GaugeMetricFamily/CounterMetricFamily from the latest results on every scrape (what the agent would
    have to do, since results replace each other), and (b) with labelled Gauge objects updated in place.
The synthetic kind has 20 metric families (4 counters, 16 gauges, with 1 or 2 sample labels); each result has
48 samples, plus probe_success and probe_duration_seconds: 50 series per job, so 20 jobs = 1k and 200 jobs = 10k.

Over HTTP (GET /metrics to the last byte on a kept-alive connection, plain and gzip):
  - the real agent (agent.lifecycle.Agent in a child process of this script, the synthetic kind registered into
    collectors.COLLECTORS before the config models are built) with 200 jobs = 10k series,
    (1) results arriving: every job runs every 2 s (100 runs/s), GETs 100 ms apart, so every scrape renders;
    (2) steady: every job runs once an hour, so after the first round every scrape is a cache hit;
  - node_exporter (default collectors, --no-collector.systemd), which collects on every scrape.
Goal (issue): /metrics p50 <= 10 ms for 10k series.

    .venv/bin/python tests/bench/bench_metrics_render.py           # about 1.9 min
    .venv/bin/python tests/bench/bench_metrics_render.py --quick   # about 35 s
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _common as c
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from agent.errors import Outcome
from agent.runner import Job, ProbeResult
from collectors.base import CollectorSpec, MetricSink, MetricSpec, ProbeContext, Settings
from exporters.exposition import Exposition

NAME = "bench_metrics_render"
KIND = "benchsynth"
GOAL_P50_MS = 10.0
SERIES_PER_JOB = 50
OFFICE = {"org_id": "000.00.20.H49", "level": "commune"}
DEVICES = ("eth0", "eth1", "wan0")
MODES = ("user", "system", "idle")


def _family(i: int) -> MetricSpec:
    labels = ("device", "mode") if i % 2 == 0 else ("device",)
    if i % 5 == 4:
        return MetricSpec(f"egov_bench_family_{i:02d}_total", "counter", f"Synthetic counter family {i}.", labels)
    return MetricSpec(f"egov_bench_family_{i:02d}_bytes", "gauge", f"Synthetic gauge family {i}.", labels)


FAMILIES = tuple(_family(i) for i in range(20))
# 8 families with 3 samples and 12 with 2: 48 samples per result.
SAMPLES_PER_FAMILY = tuple(3 if i < 8 else 2 for i in range(20))


class SynthSettings(Settings):
    """The synthetic kind has no settings."""


def fill_sink(sink: MetricSink, rng: random.Random) -> None:
    """Record one run's 48 samples: counters as large integers, gauges as floats."""
    for spec, count in zip(FAMILIES, SAMPLES_PER_FAMILY, strict=True):
        for k in range(count):
            value = float(rng.randrange(10**12)) if spec.type == "counter" else rng.random() * 1e9
            labels = (DEVICES[k], MODES[k]) if len(spec.labels) == 2 else (DEVICES[k],)
            sink.add(spec.name, value, *labels)


async def probe_synth(ctx: ProbeContext, _: SynthSettings) -> bool:
    """A probe that records the synthetic samples at once and succeeds."""
    fill_sink(ctx.sink, random.Random())
    return True


SPEC: CollectorSpec[SynthSettings] = CollectorSpec(kind=KIND, settings=SynthSettings, probe=probe_synth,
                                                   metrics=FAMILIES)


# ---------------------------------------------------------------------------------------------- in-process


def make_jobs(count: int) -> list[Job]:
    return [
        Job(check="portal-synth", target=f"https://office-{j:04d}.example.gov.vn/cong-thong-tin", module="synth",
            service="portal", interval=15.0, timeout=5.0, spec=SPEC, settings=SynthSettings())
        for j in range(count)
    ]


def make_result(job: Job, rng: random.Random) -> ProbeResult:
    sink = MetricSink(SPEC.catalog)
    fill_sink(sink, rng)
    return ProbeResult(job=job, success=rng.random() > 0.1, outcome=Outcome.SUCCESS, duration=rng.random(),
                       finished_at=time.time(), samples=sink.samples())


BASE_LABELS = ("check", "module", "service", "target", *OFFICE)


def base_values(job: Job) -> tuple[str, ...]:
    return (job.check, job.module, job.service, job.target, *OFFICE.values())


class LatestResultsCollector(Collector):
    """prometheus_client side (a): build every family from the latest results on each collect()."""

    def __init__(self, results: dict[tuple[str, str], ProbeResult]) -> None:
        self.results = results

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {
            "probe_duration_seconds": GaugeMetricFamily(
                "probe_duration_seconds", "Returns how long the probe took to complete in seconds.",
                labels=BASE_LABELS),
            "probe_success": GaugeMetricFamily("probe_success", "Whether the probe was a success.",
                                               labels=BASE_LABELS),
        }
        for spec in FAMILIES:
            cls = CounterMetricFamily if spec.type == "counter" else GaugeMetricFamily
            families[spec.name] = cls(spec.name, spec.help, labels=(*spec.labels, *BASE_LABELS))
        for result in self.results.values():
            base = base_values(result.job)
            families["probe_success"].add_metric(base, 1 if result.success else 0)
            families["probe_duration_seconds"].add_metric(base, result.duration)
            for sample in result.samples:
                families[sample.name].add_metric([v for _, v in sample.labels] + list(base), sample.value)
        for name in sorted(families):
            yield families[name]


class GaugeObjects:
    """prometheus_client side (b): one labelled Gauge per family, values set in place when a result arrives."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.gauges = {
            "probe_success": Gauge("probe_success", "Whether the probe was a success.", BASE_LABELS,
                                   registry=self.registry),
            "probe_duration_seconds": Gauge("probe_duration_seconds", "How long the probe took.", BASE_LABELS,
                                            registry=self.registry),
        }
        for spec in FAMILIES:
            self.gauges[spec.name] = Gauge(spec.name, spec.help, (*spec.labels, *BASE_LABELS),
                                           registry=self.registry)

    def update(self, result: ProbeResult) -> None:
        base = base_values(result.job)
        self.gauges["probe_success"].labels(*base).set(1 if result.success else 0)
        self.gauges["probe_duration_seconds"].labels(*base).set(result.duration)
        for sample in result.samples:
            self.gauges[sample.name].labels(*(v for _, v in sample.labels), *base).set(sample.value)


def sample_set(text: str) -> set[tuple[str, frozenset[tuple[str, str]], float]]:
    return {
        (s.name, frozenset(s.labels.items()), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def timed(run_once: Callable[[], float], budget: float, max_iterations: int, min_iterations: int = 20) -> list[float]:
    """Call `run_once` (returns the seconds it measured) until the budget is spent; at least `min_iterations`."""
    gc.collect()
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < max_iterations and (len(times) < min_iterations or time.perf_counter() < deadline):
        times.append(run_once())
    return times


def in_process(series: int, budget: float, max_iterations: int) -> dict[str, Any]:
    rng = random.Random(series)
    jobs = make_jobs(series // SERIES_PER_JOB)
    latest = {job.key: make_result(job, rng) for job in jobs}

    expo = Exposition(OFFICE)
    for result in latest.values():
        expo.update(result)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LatestResultsCollector(latest))
    gauges = GaugeObjects()
    for result in latest.values():
        gauges.update(result)

    agent_text = expo.body().decode()
    client_text = generate_latest(registry).decode()
    gauge_text = generate_latest(gauges.registry).decode()
    agent_samples = sample_set(agent_text)
    if agent_samples != sample_set(client_text) or agent_samples != sample_set(gauge_text):
        raise RuntimeError("the agent and prometheus_client render different series")
    if len(agent_samples) != series:
        raise RuntimeError(f"expected {series} series, rendered {len(agent_samples)}")

    update_times: list[float] = []

    def agent_miss() -> float:
        result = make_result(rng.choice(jobs), rng)
        started = time.perf_counter()
        expo.update(result)
        middle = time.perf_counter()
        expo.body()
        ended = time.perf_counter()
        update_times.append(middle - started)
        return ended - middle

    def agent_hit() -> float:
        started = time.perf_counter()
        expo.body()
        return time.perf_counter() - started

    def agent_gzip_miss() -> float:
        expo.update(make_result(rng.choice(jobs), rng))
        started = time.perf_counter()
        expo.gzipped_body()
        return time.perf_counter() - started

    def client_collector() -> float:
        result = make_result(rng.choice(jobs), rng)
        latest[result.job.key] = result
        started = time.perf_counter()
        generate_latest(registry)
        return time.perf_counter() - started

    gauge_update_times: list[float] = []

    def client_gauges() -> float:
        result = make_result(rng.choice(jobs), rng)
        started = time.perf_counter()
        gauges.update(result)
        middle = time.perf_counter()
        generate_latest(gauges.registry)
        ended = time.perf_counter()
        gauge_update_times.append(middle - started)
        return ended - middle

    cases = {
        "agent Exposition.body() miss": timed(agent_miss, budget, max_iterations),
        "agent Exposition.body() hit": timed(agent_hit, budget / 4, max_iterations),
        "agent gzipped_body() miss": timed(agent_gzip_miss, budget, max_iterations),
        "agent update() one result": update_times,
        "prometheus_client generate_latest, custom collector": timed(client_collector, budget, max_iterations),
        "prometheus_client generate_latest, Gauge objects": timed(client_gauges, budget, max_iterations),
        "prometheus_client Gauge .set() one result": gauge_update_times,
    }
    return {
        "series": series,
        "jobs": len(jobs),
        "body_bytes": len(agent_text.encode()),
        "gzip_bytes": len(expo.gzipped_body()),
        "cases": {name: c.summary_ms(times) for name, times in cases.items()},
    }


# ---------------------------------------------------------------------------------------------- over HTTP


AGENT_CONFIG = """\
office: {{org_id: "{org_id}", name: "Benchmark office", level: province}}
hierarchy: {{name: bench, levels: [province, {level}]}}
agent: {{max_concurrent_runs: 64}}
modules:
  synth: {{kind: {kind}, timeout: 1s}}
checks:
  - name: portal-synth
    module: synth
    service: portal
    interval: {interval}
    targets:
{targets}
"""


def agent_config_text(jobs: int, interval: str) -> str:
    targets = "\n".join(f'      - "https://office-{j:04d}.example.gov.vn/cong-thong-tin"' for j in range(jobs))
    return AGENT_CONFIG.format(org_id=OFFICE["org_id"], level=OFFICE["level"], kind=KIND, interval=interval,
                               targets=targets)


def serve_agent(config_path: Path, port: int) -> int:
    """Child process: the real agent with the synthetic kind registered before the config models are built."""
    from collectors import COLLECTORS

    COLLECTORS[KIND] = SPEC
    from agent.config import load_config
    from agent.lifecycle import Agent
    from agent.logs import setup_logging

    setup_logging("warn")
    config = load_config(config_path)
    return asyncio.run(Agent(config, str(config_path), f"127.0.0.1:{port}").run())


def time_http(url: str, pairs: int, pause: float) -> dict[str, Any]:
    """`pairs` times: one plain GET and one gzip GET, each on its own kept-alive connection, then pause."""
    plain, gzipped = c.Scraper(url), c.Scraper(url, gzip=True)
    for scraper in (plain, gzipped):
        scraper.get()  # connect and warm up
    times: dict[str, list[float]] = {"plain": [], "gzip": []}
    sizes: dict[str, int] = {}
    try:
        for _ in range(pairs):
            for label, scraper in (("plain", plain), ("gzip", gzipped)):
                elapsed, size = scraper.get()
                times[label].append(elapsed)
                sizes[label] = size
            time.sleep(pause)
    finally:
        plain.close()
        gzipped.close()
    return {label: {**c.summary_ms(values), "bytes": sizes[label]} for label, values in times.items()}


def series_in(url: str) -> int:
    status, body = c.http_get_once(url, timeout=10)
    if status != 200:
        raise RuntimeError(f"{url}: HTTP {status}")
    return sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))


def probe_success_count(body: bytes) -> int:
    return body.count(b"\nprobe_success{")


def over_http(procs: c.Processes, jobs: int, pairs: int) -> dict[str, Any]:
    logs = c.RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    scenarios: dict[str, Any] = {}
    for label, interval, pause in (("agent, results arriving (every job every 2 s)", "2s", 0.1),
                                   ("agent, steady (every job hourly: cache hits)", "1h", 0.02)):
        config = logs / f"{NAME}-{interval}.yaml"
        config.write_text(agent_config_text(jobs, interval), encoding="utf-8")
        port = c.free_port()
        process = procs.start([sys.executable, __file__, "--serve-agent", str(config), "--port", str(port)],
                              logs / f"{NAME}-agent-{interval}.log")
        url = f"http://127.0.0.1:{port}/metrics"
        c.wait_http(f"http://127.0.0.1:{port}/-/ready", process)
        # the first runs are spread over up to 10 s; wait until every job has a result
        c.wait_http(url, process, timeout=60, check=lambda body: probe_success_count(body) >= jobs)
        if interval == "1h":
            time.sleep(0.5)  # let the last runs of the first round land
        started_cpu = c.cpu_seconds(process.pid)
        started = time.monotonic()
        measured = time_http(url, pairs, pause)
        cpu = (c.cpu_seconds(process.pid) - started_cpu) / (time.monotonic() - started) * 100.0
        scenarios[label] = {"series": series_in(url), "cpu_percent_during": cpu, **measured}
        rc = procs.stop(process)
        if rc not in (0, None):
            raise RuntimeError(f"the agent exited with {rc}; see {logs}")

    port = c.free_port()
    node = procs.start(c.node_exporter_argv(port), logs / f"{NAME}-node_exporter.log")
    url = f"http://127.0.0.1:{port}/metrics"
    c.wait_http(url, node)
    started_cpu = c.cpu_seconds(node.pid)
    started = time.monotonic()
    measured = time_http(url, pairs, 0.1)
    cpu = (c.cpu_seconds(node.pid) - started_cpu) / (time.monotonic() - started) * 100.0
    scenarios["node_exporter (collects on every scrape)"] = {"series": series_in(url), "cpu_percent_during": cpu,
                                                             **measured}
    procs.stop(node)
    return scenarios


# ---------------------------------------------------------------------------------------------- report


def report(inproc: list[dict[str, Any]], http: dict[str, Any], settings: dict[str, Any]) -> None:
    for block in inproc:
        cases = block["cases"]
        peer = cases["prometheus_client generate_latest, custom collector"]["p50_ms"]
        rows = [[name, s["n"], s["p50_ms"] * 1000, s["p99_ms"] * 1000, c.fmt_ratio(c.ratio(s["p50_ms"], peer))]
                for name, s in cases.items()]
        c.print_table(
            f"in-process render, {block['series']} series ({block['jobs']} jobs, body {block['body_bytes'] / 1024:.0f}"
            f" KiB, gzip {block['gzip_bytes'] / 1024:.0f} KiB); peer: generate_latest with a custom collector",
            ["case", "n", "p50 us", "p99 us", "p50 vs peer"], rows, digits=1)
    node = http["node_exporter (collects on every scrape)"]
    rows = []
    for name, scenario in http.items():
        for enc in ("plain", "gzip"):
            s = scenario[enc]
            rows.append([f"{name} [{enc}]", scenario["series"], s["bytes"] / 1024, s["p50_ms"], s["p99_ms"],
                         s["p50_ms"] * 1000 / scenario["series"], scenario["cpu_percent_during"],
                         c.fmt_ratio(c.ratio(s["p50_ms"], node[enc]["p50_ms"]))])
    c.print_table(f"GET /metrics over HTTP on 127.0.0.1 ({settings['http_pairs']} plain + "
                  f"{settings['http_pairs']} gzip requests each)",
                  ["server", "series", "KiB", "p50 ms", "p99 ms", "us/series", "server CPU %", "p50 vs node"], rows)
    arriving = next(iter(http.values()))
    worst = max(arriving["plain"]["p50_ms"], arriving["gzip"]["p50_ms"])
    print(f"\ngoal: /metrics p50 <= {GOAL_P50_MS:g} ms for 10k series (results arriving, plain and gzip): "
          f"{'PASS' if worst <= GOAL_P50_MS else 'FAIL'} ({worst:.2f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="about 35 s instead of about 1.9 min")
    parser.add_argument("--serve-agent", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_agent is not None:
        return serve_agent(args.serve_agent, args.port)

    settings = {
        "case_budget_seconds": 1.5 if args.quick else 6.0,
        "case_max_iterations": 300 if args.quick else 2000,
        "http_pairs": 40 if args.quick else 250,
        "http_jobs": 200,
        "series_per_job": SERIES_PER_JOB,
    }
    print(f"{NAME}: {'quick' if args.quick else 'full'} run")
    inproc = [in_process(series, settings["case_budget_seconds"], settings["case_max_iterations"])
              for series in (1000, 10000)]
    procs = c.Processes()
    try:
        http = over_http(procs, settings["http_jobs"], settings["http_pairs"])
    finally:
        procs.stop_all()
    report(inproc, http, settings)
    arriving = next(iter(http.values()))
    c.write_result(NAME, {
        "settings": settings,
        "in_process": inproc,
        "http": http,
        "goal": {"p50_ms_max": GOAL_P50_MS,
                 "met": max(arriving["plain"]["p50_ms"], arriving["gzip"]["p50_ms"]) <= GOAL_P50_MS},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
