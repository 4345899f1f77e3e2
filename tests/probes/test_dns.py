"""The dns kind against Debian's dnsmasq on loopback, and a dnspython responder for the faults dnsmasq won't make."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.rdataclass
import pytest
from fakes import dns as fake
from fakes.blackbox import samples_of
from fakes.tcp import Certs, make_certs
from pydantic import ValidationError
from testlib import free_port

from agent.config import builtin_modules
from agent.errors import Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import dns as dns_kind
from collectors.dns import DnsSettings, check_dns_target

ZONE = fake.ZONE


async def probe(body: dict[str, Any] | DnsSettings, target: str, module_timeout: float = 2.0) -> ProbeResult:
    """One run through the real runner."""
    settings = body if isinstance(body, DnsSettings) else DnsSettings.model_validate(body)
    return await run_job(Job("c", target, "m", "dns", 60.0, module_timeout, dns_kind.SPEC, settings))


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fake.Dnsmasq]:
    server = fake.Dnsmasq(tmp_path_factory.mktemp("dnsmasq")).start()
    yield server
    server.stop()


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path)


# --- against dnsmasq -------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_record(dnsmasq: fake.Dnsmasq) -> None:
    result = await probe({"query_name": f"web.{ZONE}", "query_type": "A"}, dnsmasq.target)
    assert result.success, result.error
    values = samples_of(result.samples)
    assert values["probe_dns_answer_rrs"] == 1
    assert values["probe_dns_authority_rrs"] == 1  # the auth zone's NS
    assert values["probe_dns_additional_rrs"] == 0
    assert values["probe_dns_query_succeeded"] == 1
    assert values["probe_ip_protocol"] == 4
    assert {f'probe_dns_duration_seconds{{phase="{p}"}}' for p in ("resolve", "connect", "request")} <= set(values)
    assert "probe_dns_serial" not in values


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "rdtype", "answers"),
    [
        (f"db.{ZONE}", "AAAA", 1), (f"www.{ZONE}", "A", 2), (ZONE, "MX", 1), (f"multi.{ZONE}", "TXT", 2),
        (f"_imap._tcp.{ZONE}", "SRV", 1), ("11.0.0.127.in-addr.arpa", "PTR", 1), (ZONE, "NS", 1),
        (f"www.{ZONE}", "CNAME", 1),
    ],
)
async def test_record_types(dnsmasq: fake.Dnsmasq, name: str, rdtype: str, answers: int) -> None:
    result = await probe({"query_name": name, "query_type": rdtype}, dnsmasq.target)
    assert result.success, result.error
    assert samples_of(result.samples)["probe_dns_answer_rrs"] == answers


@pytest.mark.slow
async def test_soa_serial(dnsmasq: fake.Dnsmasq) -> None:
    result = await probe({"query_name": ZONE, "query_type": "SOA"}, dnsmasq.target)
    assert result.success, result.error
    assert samples_of(result.samples)["probe_dns_serial"] == fake.SOA_SERIAL


@pytest.mark.slow
async def test_rcodes(dnsmasq: fake.Dnsmasq) -> None:
    nxdomain = await probe({"query_name": f"nope.{ZONE}", "query_type": "A"}, dnsmasq.target)
    allowed = await probe({"query_name": f"nope.{ZONE}", "query_type": "A", "valid_rcodes": ["NXDOMAIN"]},
                          dnsmasq.target)
    refused = await probe({"query_name": "example.com", "query_type": "A"}, dnsmasq.target)
    assert nxdomain.outcome is Outcome.MISMATCH
    assert nxdomain.error == "rcode NXDOMAIN is not one of the valid rcodes NOERROR"
    assert samples_of(nxdomain.samples)["probe_dns_query_succeeded"] == 1
    assert allowed.success, allowed.error
    assert samples_of(allowed.samples)["probe_dns_authority_rrs"] == 1
    assert refused.outcome is Outcome.MISMATCH
    assert "REFUSED" in refused.error


@pytest.mark.slow
async def test_tcp_transport(dnsmasq: fake.Dnsmasq) -> None:
    result = await probe({"query_name": f"www.{ZONE}", "query_type": "A", "transport_protocol": "tcp"},
                         dnsmasq.target)
    assert result.success, result.error
    assert samples_of(result.samples)["probe_dns_answer_rrs"] == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "validator", "success"),
    [
        pytest.param(f"web.{ZONE}", {"fail_if_not_matches_regexp": [rf"^web\.{ZONE}\.\t600\tIN\tA\t127\.0\.0\.11$"]},
                     True, id="record text as miekg/dns prints it"),
        pytest.param(f"web.{ZONE}", {"fail_if_matches_regexp": [r"127\.0\.0\.11"]}, False, id="matches"),
        pytest.param(f"multi.{ZONE}", {"fail_if_none_matches_regexp": ['"second"']}, True, id="one of two"),
        pytest.param(f"multi.{ZONE}", {"fail_if_none_matches_regexp": ["third"]}, False, id="none of two"),
        pytest.param(f"multi.{ZONE}", {"fail_if_not_matches_regexp": ["first"]}, False, id="not every record"),
        pytest.param(f"multi.{ZONE}", {"fail_if_all_match_regexp": ["first"]}, False, id="all-match as blackbox"),
        pytest.param(f"multi.{ZONE}", {"fail_if_all_match_regexp": [ZONE]}, True, id="all-match every record"),
        pytest.param(f"www.{ZONE}", {"fail_if_not_matches_regexp": [r"\tCNAME\t"]}, False, id="CNAME and A"),
    ],
)
async def test_answer_validation(dnsmasq: fake.Dnsmasq, name: str, validator: dict[str, Any],
                                 success: bool) -> None:
    rdtype = "TXT" if name.startswith("multi") else "A"
    result = await probe({"query_name": name, "query_type": rdtype, "validate_answer_rrs": validator},
                         dnsmasq.target)
    assert result.success is success, result.error
    if not success:
        assert result.outcome is Outcome.MISMATCH
        assert result.error.startswith("answer records: ")


@pytest.mark.slow
async def test_validation_of_empty_sections(dnsmasq: fake.Dnsmasq) -> None:
    empty = {"query_name": f"web.{ZONE}", "query_type": "MX"}
    not_matches = await probe({**empty, "validate_answer_rrs": {"fail_if_not_matches_regexp": ["."]}},
                              dnsmasq.target)
    all_match = await probe({**empty, "validate_answer_rrs": {"fail_if_all_match_regexp": ["."]}}, dnsmasq.target)
    authority = await probe({"query_name": f"nope.{ZONE}", "query_type": "A", "valid_rcodes": ["NXDOMAIN"],
                             "validate_authority_rrs": {"fail_if_none_matches_regexp": [r"\tSOA\tns1\."]},
                             "validate_additional_rrs": {"fail_if_matches_regexp": ["."]}}, dnsmasq.target)
    assert not_matches.error == "answer records: fail_if_not_matches_regexp is set but there are no records"
    assert all_match.success, all_match.error
    assert authority.success, authority.error


# --- faults, from the responder ----------------------------------------------------------------------------------


async def test_servfail_is_a_mismatch() -> None:
    async with fake.Responder(fake.servfail) as server:
        result = await probe({"query_name": "portal.quangnam.gov.vn", "query_type": "A"}, server.target)
    assert result.outcome is Outcome.MISMATCH
    assert result.error == "rcode SERVFAIL is not one of the valid rcodes NOERROR"
    values = samples_of(result.samples)
    assert values["probe_dns_query_succeeded"] == 1
    assert values["probe_dns_answer_rrs"] == 0


async def test_no_answer_times_out_with_every_metric() -> None:
    loop = asyncio.get_running_loop()
    async with fake.Responder(fake.silent) as server:
        started = loop.time()
        result = await probe({"query_name": "portal.quangnam.gov.vn"}, server.target, module_timeout=0.5)
        elapsed = loop.time() - started
    assert result.outcome is Outcome.TIMEOUT
    assert result.error == f"no answer from 127.0.0.1 port {server.port} within the timeout"
    assert 0.45 <= elapsed < 0.6
    values = samples_of(result.samples)
    assert values["probe_dns_query_succeeded"] == 0
    assert values['probe_dns_duration_seconds{phase="request"}'] > 0.4


@pytest.mark.parametrize("handler", [fake.garbage, fake.wrong_id], ids=["malformed", "wrong id"])
async def test_bad_replies_are_protocol_errors(handler: fake.Handler) -> None:
    async with fake.Responder(handler) as server:
        result = await probe({"query_name": "portal.quangnam.gov.vn"}, server.target)
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert result.error.startswith(f"bad answer from 127.0.0.1 port {server.port}: ")
    assert samples_of(result.samples)["probe_dns_query_succeeded"] == 0


async def test_truncated_reply_is_taken_as_it_is() -> None:
    # like blackbox (miekg/dns returns the message with TC set): no retry over TCP
    async with fake.Responder(fake.truncated) as server:
        result = await probe({"query_name": "portal.quangnam.gov.vn", "query_type": "A"}, server.target)
    assert result.success, result.error
    assert samples_of(result.samples)["probe_dns_answer_rrs"] == 0


async def test_closed_ports_fail_fast() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    udp = await probe({"query_name": "x.vn"}, f"127.0.0.1:{free_port()}")
    tcp = await probe({"query_name": "x.vn", "transport_protocol": "tcp"}, f"127.0.0.1:{free_port()}")
    assert udp.outcome is Outcome.CONNECTION_FAILED, udp.error
    assert tcp.outcome is Outcome.CONNECTION_FAILED, tcp.error
    assert "refused" in udp.error.lower() and "refused" in tcp.error.lower()
    assert loop.time() - started < 1.0


async def test_tcp_server_closing_without_answer() -> None:
    async with fake.Responder(fake.silent) as server:
        result = await probe({"query_name": "x.vn", "transport_protocol": "tcp"}, server.target)
    assert result.outcome is Outcome.PROTOCOL_ERROR


async def test_query_flags_class_and_no_edns() -> None:
    async with fake.Responder(fake.answer_a()) as server:
        default = await probe({"query_name": "portal.quangnam.gov.vn", "query_type": "A"}, server.target)
        norec = await probe({"query_name": "portal.quangnam.gov.vn.", "query_type": "TXT", "query_class": "CH",
                             "recursion_desired": False}, server.target)
    assert default.success and norec.success
    first, second = server.queries
    assert first.flags & dns.flags.RD and not second.flags & dns.flags.RD
    assert str(first.question[0].name) == str(second.question[0].name) == "portal.quangnam.gov.vn."
    assert second.question[0].rdclass == dns.rdataclass.CH
    assert first.edns == -1  # blackbox sends no EDNS either


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_source_ip_address(transport: str) -> None:
    async with fake.Responder(fake.answer_a()) as server:
        result = await probe({"query_name": "x.vn", "transport_protocol": transport,
                              "source_ip_address": "127.0.0.2"}, server.target)
    assert result.success, result.error
    assert server.sources == ["127.0.0.2"]


async def test_ipv6_server_and_host_name_targets() -> None:
    async with fake.Responder(fake.answer_a(), host="::1") as server:
        v6 = await probe({"query_name": "x.vn", "query_type": "A"}, server.target)
    async with fake.Responder(fake.answer_a()) as server:
        # ip4 first: /etc/hosts answers, the machine's DNS server (outside loopback) is never asked
        by_name = await probe({"query_name": "x.vn", "query_type": "A", "preferred_ip_protocol": "ip4"},
                              f"localhost:{server.port}")
    assert v6.success, v6.error
    assert samples_of(v6.samples)["probe_ip_protocol"] == 6
    assert by_name.success, by_name.error
    assert samples_of(by_name.samples)["probe_ip_protocol"] == 4


async def test_dns_over_tls(certs: Certs) -> None:
    body = {"query_name": "x.vn", "query_type": "A", "transport_protocol": "tcp", "dns_over_tls": True}
    async with fake.Responder(fake.answer_a(), tls=certs.server_context()) as server:
        good = await probe({**body, "tls_config": {"ca_file": str(certs.ca_file)}}, server.target)
        unknown_ca = await probe(body, server.target)
    assert good.success, good.error
    assert unknown_ca.outcome is Outcome.TLS_FAILED
    assert "certificate verify failed" in unknown_ca.error


# --- config and targets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "query_name\n  Field required"),
        ({"query_name": "a..vn"}, "'a..vn' is not a domain name"),
        ({"query_name": "x" * 64 + ".vn"}, "is not a domain name"),
        ({"query_name": "x.vn", "query_type": "AAAAA"}, "query type 'AAAAA' is not valid"),
        ({"query_name": "x.vn", "query_class": "XX"}, "query class 'XX' is not valid"),
        ({"query_name": "x.vn", "valid_rcodes": ["NOERROR", "OK"]}, "rcode 'OK' is not valid"),
        ({"query_name": "x.vn", "valid_rcodes": []}, "at least 1 item"),
        ({"query_name": "x.vn", "transport_protocol": "quic"}, "Input should be 'udp' or 'tcp'"),
        ({"query_name": "x.vn", "dns_over_tls": True}, "dns_over_tls needs transport_protocol: tcp"),
        ({"query_name": "x.vn", "validate_answer_rrs": {"fail_if_matches_regexp": ["("]}},
         "invalid regular expression '('"),
        ({"query_name": "x.vn", "source_ip_address": "10.0.0"}, "'10.0.0' is not an IP address"),
    ],
)
def test_bad_settings_are_refused_at_load(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        DnsSettings.model_validate(body)


def test_names_are_normalised() -> None:
    settings = DnsSettings.model_validate({"query_name": "x.vn", "query_type": "mx", "query_class": "in",
                                           "valid_rcodes": ["nxdomain", "BADSIG"]})
    assert (settings.query_type, settings.query_class, settings.valid_rcodes) == ("MX", "IN", ("NXDOMAIN", "BADVERS"))


@pytest.mark.parametrize(
    ("target", "dot", "ok"),
    [("10.49.0.53", False, True), ("10.49.0.53:5353", False, True), ("ns1.quangnam.gov.vn", False, True),
     ("::1", False, True), ("[::1]:53", False, True), ("[::1]", True, True), ("ns1:domain", False, False),
     ("10.49.0.53:0", False, False), ("udp://10.49.0.53", False, False)],
)
def test_targets(target: str, dot: bool, ok: bool) -> None:
    settings = DnsSettings.model_validate({"query_name": "x.vn", "transport_protocol": "tcp", "dns_over_tls": dot})
    if ok:
        check_dns_target(target, settings)
    else:
        with pytest.raises(ValueError, match="target"):
            check_dns_target(target, settings)


def test_builtin_dns_udp() -> None:
    module = builtin_modules()["dns_udp"]
    assert module.timeout == 5
    assert module.dns == DnsSettings(query_name="www.prometheus.io", query_type="A")


def test_dnspython_is_not_imported_until_a_dns_probe_runs() -> None:
    code = ("import json, sys, agent.config, agent.lifecycle; agent.config.builtin_modules(); "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('dns.'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(done.stdout))
    assert not loaded & {"dns.message", "dns.asyncquery", "dns.name", "dns.rdata", "dns.resolver"}, loaded
