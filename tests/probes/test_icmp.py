"""The icmp kind against the real loopback: bursts, counters across runs, deadline, resolve failure, settings."""

from __future__ import annotations

import asyncio
import re

import pytest
from pydantic import ValidationError
from testlib import UNRESOLVABLE_HOST

from agent.config import builtin_modules, parse_config
from agent.errors import Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import COLLECTORS, icmp
from collectors.icmp import IcmpSettings, check_icmp_target

SPEC = COLLECTORS["icmp"]


def job(target: str, timeout: float = 5.0, check: str = "wan", **settings: object) -> Job:
    return Job(check, target, "wan_icmp", "wan", timeout + 1, timeout, SPEC, IcmpSettings(**settings))


def values(result: ProbeResult) -> dict[str, float]:
    """Samples by name, with label values appended in braces: {'probe_icmp_duration_seconds{rtt}': ...}."""
    out: dict[str, float] = {}
    for sample in result.samples:
        key = sample.name + ("{" + ",".join(v for _, v in sample.labels) + "}" if sample.labels else "")
        out[key] = sample.value
    return out


@pytest.mark.parametrize(("target", "protocol"), [("127.0.0.1", 4), ("::1", 6)])
async def test_burst_to_loopback(target: str, protocol: int) -> None:
    result = await run_job(job(target, check=f"loop{protocol}", packets=5, interval="20ms"))
    assert result.success, result.error
    got = values(result)
    assert got["egov_icmp_packets_sent"] == 5
    assert got["egov_icmp_packets_received"] == 5
    assert got["egov_icmp_loss_ratio"] == 0
    assert got["probe_ip_protocol"] == protocol
    assert got["probe_icmp_reply_hop_limit"] == 64
    assert 0 < got["egov_icmp_rtt_min_seconds"] <= got["egov_icmp_rtt_avg_seconds"] <= got["egov_icmp_rtt_max_seconds"]
    assert got["egov_icmp_rtt_max_seconds"] < 0.05
    assert got["probe_icmp_duration_seconds{rtt}"] == got["egov_icmp_rtt_avg_seconds"]
    assert 0 <= got["egov_icmp_jitter_seconds"] <= got["egov_icmp_rtt_max_seconds"]
    assert got["smokeping_requests_total"] == 5
    assert got["smokeping_response_duration_seconds_count"] == 5
    assert got["smokeping_response_duration_seconds_bucket{+Inf}"] == 5
    assert got["smokeping_response_duration_seconds_sum"] == pytest.approx(5 * got["egov_icmp_rtt_avg_seconds"])
    # the burst is paced: 4 gaps of 20 ms
    assert 0.08 <= result.duration < 1.0


async def test_counters_grow_across_runs_per_check_and_target() -> None:
    first = values(await run_job(job("127.0.0.1", check="grow", packets=3, interval="10ms")))
    second = values(await run_job(job("127.0.0.1", check="grow", packets=2, interval="10ms")))
    other = values(await run_job(job("127.0.0.1", check="grow-other", packets=1)))
    assert (first["smokeping_requests_total"], second["smokeping_requests_total"]) == (3, 5)
    assert second["smokeping_response_duration_seconds_count"] == 5
    assert second["smokeping_response_duration_seconds_sum"] > first["smokeping_response_duration_seconds_sum"]
    buckets = [v for k, v in second.items() if k.startswith("smokeping_response_duration_seconds_bucket")]
    assert buckets == sorted(buckets) and len(buckets) == 21
    assert other["smokeping_requests_total"] == 1


def test_histogram_buckets_are_smokeping_probers() -> None:
    text = ("5e-05,0.0001,0.0002,0.0004,0.0008,0.0016,0.0032,0.0064,0.0128,0.0256,0.0512,0.1024,0.2048,0.4096,"
            "0.8192,1.6384,3.2768,6.5536,13.1072,26.2144")
    assert ",".join(repr(b) for b in icmp.BUCKETS) == text


def test_tracked_pairs_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(icmp, "MAX_TRACKED", 3)
    monkeypatch.setattr(icmp, "_TOTALS", type(icmp._TOTALS)())
    for name in "abcd":
        icmp._totals(name, "t")
    icmp._totals("b", "t")
    icmp._totals("e", "t")
    assert [check for check, _ in icmp._TOTALS] == ["d", "b", "e"]


async def test_random_echo_identifier_per_run() -> None:
    idents = set()
    for _ in range(4):
        result = await run_job(job("127.0.0.1", check="ident"))
        line = next(line.message for line in result.lines if "echo id" in line.message)
        idents.add(re.search(r"echo id (\d+)", line).group(1))  # type: ignore[union-attr]
    assert len(idents) >= 3


async def test_name_that_does_not_resolve() -> None:
    result = await run_job(job(UNRESOLVABLE_HOST, check="nx", packets=10, interval="10ms"))
    assert result.outcome is Outcome.RESOLVE_FAILED
    got = values(result)
    assert "egov_icmp_packets_sent" not in got
    # blackbox pre-seeds every phase; smokeping_prober starts its series at 0
    phases = {k for k in got if k.startswith("probe_icmp_duration")}
    assert phases == {f"probe_icmp_duration_seconds{{{phase}}}" for phase in ("resolve", "setup", "rtt")}
    assert got["smokeping_requests_total"] == 0
    assert got["smokeping_response_duration_seconds_count"] == 0


async def test_burst_longer_than_the_timeout_fails_at_once_without_sending() -> None:
    result = await run_job(job("127.0.0.1", timeout=2.0, check="long", packets=10, interval="1s"))
    assert result.outcome is Outcome.ERROR
    assert "burst of 10 packets 1s apart takes 9s" in result.error and "timeout" in result.error
    assert result.duration < 0.5
    assert values(result)["smokeping_requests_total"] == 0


async def test_a_burst_that_just_fits_in_the_timeout() -> None:
    result = await run_job(job("127.0.0.1", timeout=1.0, check="fits", packets=4, interval="280ms", min_replies=4))
    assert result.success, result.error
    assert 0.84 <= result.duration < 1.0
    assert values(result)["egov_icmp_packets_received"] == 4


async def test_concurrent_bursts_to_one_target_do_not_steal_replies() -> None:
    jobs = [job("127.0.0.1", check=f"par{i}", packets=5, interval="10ms") for i in range(8)]
    results = await asyncio.gather(*(run_job(j) for j in jobs))
    assert [values(r)["egov_icmp_packets_received"] for r in results] == [5] * 8


def test_builtin_module_means_blackbox_icmp() -> None:
    module = builtin_modules()["icmp"]
    assert module.kind == "icmp" and module.timeout == 10
    settings = module.icmp
    assert (settings.packets, settings.min_replies, settings.preferred_ip_protocol, settings.ttl) == (1, 1, "ip6", 64)


def test_wan_module_from_config() -> None:
    config = parse_config(b"""\
office: {org_id: 000.00.20.H49, name: X, level: province}
modules:
  wan_icmp: {kind: icmp, timeout: 10s, icmp: {packets: 10, interval: 200ms, min_replies: 5, ttl: 32,
             payload_size: 56, dont_fragment: true, preferred_ip_protocol: ip4, source_ip_address: 127.0.0.1}}
checks:
  - {name: wan-province, module: wan_icmp, service: wan, targets: [127.0.0.1, "::1", router.example], interval: 30s}
""", "test.yaml")
    settings = config.modules["wan_icmp"].icmp
    assert (settings.packets, settings.interval, settings.min_replies) == (10, 0.2, 5)
    assert settings.model_dump(mode="json")["interval"] == "200ms"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ttl": 256}, "less than or equal to 255"),
        ({"ttl": -1}, "greater than or equal to 0"),
        ({"packets": 0}, "greater than or equal to 1"),
        ({"packets": 3, "min_replies": 4}, "min_replies 4 exceeds packets 3"),
        ({"interval": "fast"}, "invalid duration"),
        ({"source_ip_address": "eth0"}, "is not an IP address"),
        ({"payload_size": 70000}, "less than or equal to 65000"),
        ({"count": 3}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_fail_at_load(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IcmpSettings(**settings)


@pytest.mark.parametrize("target", ["127.0.0.1", "::1", "[::1]", "router.example", "router", "gw-1.office.vn."])
def test_good_targets(target: str) -> None:
    check_icmp_target(target, IcmpSettings())


@pytest.mark.parametrize("target", ["http://router.example/", "router.example:80", "a b", "-bad.example", ""])
def test_bad_targets(target: str) -> None:
    with pytest.raises(ValueError, match="neither a host name nor an IP address"):
        check_icmp_target(target, IcmpSettings())
