"""The dns kind side by side with Debian's blackbox_exporter: same modules, same servers (dnsmasq and faults)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import dns as fake
from fakes.blackbox import Blackbox, samples_of
from testlib import free_port

from agent.runner import Job, run_job
from collectors import dns as dns_kind
from collectors.dns import DnsSettings

pytestmark = pytest.mark.slow

ZONE = fake.ZONE
COMPARED = re.compile(r"^probe_(success|ip_protocol|dns_(answer|authority|additional)_rrs|dns_query_succeeded|"
                      r"dns_serial)$")
# module name -> dns block, run against dnsmasq
AGAINST_DNSMASQ: dict[str, dict[str, Any]] = {
    "a": {"query_name": f"web.{ZONE}", "query_type": "A"},
    "a_tcp": {"query_name": f"web.{ZONE}", "query_type": "A", "transport_protocol": "tcp"},
    "a_no_recursion": {"query_name": f"web.{ZONE}", "query_type": "A", "recursion_desired": False},
    "cname_chain": {"query_name": f"www.{ZONE}", "query_type": "A"},
    "aaaa": {"query_name": f"db.{ZONE}", "query_type": "AAAA"},
    "mx": {"query_name": ZONE, "query_type": "MX"},
    "txt": {"query_name": f"multi.{ZONE}", "query_type": "TXT"},
    "ptr": {"query_name": "11.0.0.127.in-addr.arpa", "query_type": "PTR"},
    "soa": {"query_name": ZONE, "query_type": "SOA"},
    "soa_of_a_name": {"query_name": f"web.{ZONE}", "query_type": "SOA"},
    "any_default": {"query_name": ZONE},
    "nxdomain": {"query_name": f"nope.{ZONE}", "query_type": "A"},
    "nxdomain_valid": {"query_name": f"nope.{ZONE}", "query_type": "A", "valid_rcodes": ["NXDOMAIN"]},
    "refused": {"query_name": "example.com", "query_type": "A"},
    "rr_text": {"query_name": f"web.{ZONE}", "query_type": "A", "validate_answer_rrs": {
        "fail_if_not_matches_regexp": [rf"^web\.{ZONE}\.\t600\tIN\tA\t127\.0\.0\.11$"]}},
    "rr_matches": {"query_name": f"web.{ZONE}", "query_type": "A",
                   "validate_answer_rrs": {"fail_if_matches_regexp": [r"127\.0\.0\.11"]}},
    "rr_none_second": {"query_name": f"multi.{ZONE}", "query_type": "TXT",
                       "validate_answer_rrs": {"fail_if_none_matches_regexp": ['"second"']}},
    "rr_none_third": {"query_name": f"multi.{ZONE}", "query_type": "TXT",
                      "validate_answer_rrs": {"fail_if_none_matches_regexp": ["third"]}},
    "rr_not_first": {"query_name": f"multi.{ZONE}", "query_type": "TXT",
                     "validate_answer_rrs": {"fail_if_not_matches_regexp": ["first"]}},
    "rr_all_first": {"query_name": f"multi.{ZONE}", "query_type": "TXT",
                     "validate_answer_rrs": {"fail_if_all_match_regexp": ["first"]}},
    "rr_all_zone": {"query_name": f"multi.{ZONE}", "query_type": "TXT",
                    "validate_answer_rrs": {"fail_if_all_match_regexp": [ZONE]}},
    "rr_empty_not": {"query_name": f"web.{ZONE}", "query_type": "MX",
                     "validate_answer_rrs": {"fail_if_not_matches_regexp": ["."]}},
    "rr_empty_all": {"query_name": f"web.{ZONE}", "query_type": "MX",
                     "validate_answer_rrs": {"fail_if_all_match_regexp": ["."]}},
    "rr_authority": {"query_name": f"nope.{ZONE}", "query_type": "A", "valid_rcodes": ["NXDOMAIN"],
                     "validate_authority_rrs": {"fail_if_none_matches_regexp": [r"\tSOA\tns1\."]}},
}
# module name -> (dns block, responder handler or None for a closed port)
AGAINST_FAULTS: dict[str, tuple[dict[str, Any], fake.Handler | None]] = {
    "servfail": ({"query_name": "x.vn", "query_type": "A"}, fake.servfail),
    "truncated": ({"query_name": "x.vn", "query_type": "A"}, fake.truncated),
    "garbage": ({"query_name": "x.vn", "query_type": "A"}, fake.garbage),
    "wrong_id": ({"query_name": "x.vn", "query_type": "A"}, fake.wrong_id),
    "silent": ({"query_name": "x.vn", "query_type": "A"}, fake.silent),
    "tcp_silent": ({"query_name": "x.vn", "query_type": "A", "transport_protocol": "tcp"}, fake.silent),
    "closed_udp": ({"query_name": "x.vn", "query_type": "A"}, None),
    "closed_tcp": ({"query_name": "x.vn", "query_type": "A", "transport_protocol": "tcp"}, None),
    "answer": ({"query_name": "x.vn", "query_type": "A", "validate_answer_rrs": {
        "fail_if_not_matches_regexp": [r"^x\.vn\.\t300\tIN\tA\t127\.0\.0\.5$"]}}, fake.answer_a()),
}


def timeout_of(name: str) -> float:
    return 1.0 if "silent" in name else 2.0


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fake.Dnsmasq]:
    server = fake.Dnsmasq(tmp_path_factory.mktemp("dnsmasq")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def blackbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Blackbox]:
    bodies = {**AGAINST_DNSMASQ, **{name: body for name, (body, _) in AGAINST_FAULTS.items()}}
    modules = {name: {"prober": "dns", "timeout": f"{timeout_of(name):g}s", "dns": body}
               for name, body in bodies.items()}
    exporter = Blackbox(tmp_path_factory.mktemp("blackbox"), modules).start()
    yield exporter
    exporter.stop()


async def both(blackbox: Blackbox, module: str, body: dict[str, Any], target: str) -> tuple[dict[str, float],
                                                                                           dict[str, float]]:
    """(blackbox's compared samples, ours) for one module on one target."""
    theirs = await asyncio.to_thread(blackbox.probe, module, target)
    job = Job("c", target, module, "dns", 60.0, timeout_of(module), dns_kind.SPEC, DnsSettings.model_validate(body))
    result = await run_job(job)
    ours = {**samples_of(result.samples), "probe_success": 1.0 if result.success else 0.0}
    return ({k: v for k, v in theirs.items() if COMPARED.match(k)},
            {k: v for k, v in ours.items() if COMPARED.match(k)})


@pytest.mark.parametrize("module", sorted(AGAINST_DNSMASQ))
async def test_same_as_blackbox_against_dnsmasq(blackbox: Blackbox, dnsmasq: fake.Dnsmasq, module: str) -> None:
    theirs, ours = await both(blackbox, module, AGAINST_DNSMASQ[module], dnsmasq.target)
    assert ours == theirs, blackbox.debug(module, dnsmasq.target)


@pytest.mark.parametrize("module", sorted(AGAINST_FAULTS))
async def test_same_as_blackbox_against_faults(blackbox: Blackbox, module: str) -> None:
    body, handler = AGAINST_FAULTS[module]
    if handler is None:
        theirs, ours = await both(blackbox, module, body, f"127.0.0.1:{free_port()}")
    else:
        async with fake.Responder(handler) as server:
            theirs, ours = await both(blackbox, module, body, server.target)
    # blackbox registers probe_ip_protocol only once resolved, and always here (IP targets); both must agree
    assert ours == theirs


async def test_expected_results_hold(blackbox: Blackbox, dnsmasq: fake.Dnsmasq) -> None:
    """Guards against both sides being wrong the same way: a few results written out."""
    expected = {"a": 1, "soa": 1, "nxdomain": 0, "nxdomain_valid": 1, "refused": 0, "rr_text": 1, "rr_matches": 0,
                "rr_all_first": 0, "rr_all_zone": 1, "rr_empty_all": 1, "rr_empty_not": 0}
    got = {name: (await asyncio.to_thread(blackbox.probe, name, dnsmasq.target))["probe_success"]
           for name in expected}
    assert got == expected
