"""The snmp kind without snmpd: codec and keys cross-checked with pysnmp, settings, snmp_exporter's rendering
rules, and walk safety against a scripted agent on loopback (faults a real snmpd cannot produce)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
from fakes.blackbox import samples_of
from fakes.snmp import ScriptedAgent, free_udp_port, if_table, mib_agent, response
from pydantic import ValidationError
from testlib import UNRESOLVABLE_HOST

from agent.config import builtin_modules
from agent.errors import Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import snmp
from collectors._snmp_ber import (
    COUNTER64,
    BerError,
    VarBind,
    decode_community_message,
    encode_community_message,
    encode_pdu,
    parse_oid,
)
from collectors._snmp_module import MetricDef, compile_plan, render
from collectors._snmp_usm import PRIV_PROTOCOLS, localized_key, priv_key_for
from collectors.base import MetricSink
from collectors.snmp import SnmpSettings, split_target

IF_NAME = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)


async def probe(settings: SnmpSettings | dict[str, Any], target: str, module_timeout: float = 3.0) -> ProbeResult:
    """One run through the real runner, as the scheduler does it."""
    if isinstance(settings, dict):
        settings = SnmpSettings.model_validate(settings)
    return await run_job(Job("c", target, "m", "wan", 60.0, module_timeout, snmp.SPEC, settings))


def if_mib(**changes: Any) -> SnmpSettings:
    """The built-in if_mib module with the test community and other changes."""
    return SnmpSettings.model_validate({"include": ["if_mib"], "auth": {"community": "public"}, **changes})


# --- codec -----------------------------------------------------------------------------------------------------


def test_decoder_reads_what_pysnmp_encodes() -> None:
    from pyasn1.type import univ
    from pysnmp.proto import rfc1902

    values = [
        ((1, 3, 6, 1, 2, 1, 1, 1, 0), rfc1902.OctetString(b"\x00\xffbinary"), b"\x00\xffbinary"),
        ((1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 2**31 - 1), rfc1902.Integer32(-2**31), -2**31),
        ((1, 3, 6, 1, 4, 1, 2636, 3, 1, 13, 1, 8, 9, 1, 0, 0), rfc1902.Counter32(2**32 - 1), 2**32 - 1),
        ((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 1000001), rfc1902.Counter64(2**64 - 1), 2**64 - 1),
        ((1, 3, 6, 1, 2, 1, 1, 3, 0), rfc1902.TimeTicks(2**32 - 1), 2**32 - 1),
        ((1, 3, 6, 1, 2, 1, 4, 20, 1, 1, 10, 0, 0, 1), rfc1902.IpAddress("10.0.0.1"), b"\n\x00\x00\x01"),
        ((1, 3, 6, 1, 2, 1, 1, 2, 0), univ.ObjectIdentifier((1, 3, 6, 1, 4, 1, 8072, 3, 2, 10)),
         (1, 3, 6, 1, 4, 1, 8072, 3, 2, 10)),
        ((2, 999, 1), rfc1902.Gauge32(0), 0),
    ]
    request = _request_for([oid for oid, _, _ in values])
    data = response(request, [(oid, value) for oid, value, _ in values] + [((1, 3, 6, 1, 9), None)])
    version, community, pdu = decode_community_message(data)
    assert (version, community, pdu.request_id) == (1, b"public", request.request_id)
    assert [(vb.oid, vb.value) for vb in pdu.varbinds[:-1]] == [(oid, want) for oid, _, want in values]
    assert pdu.varbinds[-1].tag == 0x82  # endOfMibView


def test_encoded_requests_decode_with_pysnmp() -> None:
    from fakes.snmp import decode_request

    oids = [(1, 3, 6, 1, 2, 1, 2, 2, 1, 10), (1, 3, 6, 1, 4, 1, 9, 9, 2**32 - 1, 16384, 127, 128)]
    data = encode_community_message(1, b"c0mmunity", encode_pdu(0xA5, 77, oids, 0, 25))
    request = decode_request(data)
    assert (request.pdu_type, request.request_id, request.oids, request.max_repetitions) == (
        "getBulkRequest", 77, oids, 25)


def test_garbage_only_ever_raises_ber_error() -> None:
    valid = response(_request_for([IF_NAME]), [((*IF_NAME, i), _octets(f"eth{i}")) for i in range(30)])
    rng = random.Random(4)
    candidates = [valid[:cut] for cut in range(len(valid))]
    for _ in range(3000):
        mutated = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        candidates.append(bytes(mutated))
    candidates += [os.urandom(rng.randint(0, 300)) for _ in range(1000)]
    for data in candidates:
        with contextlib.suppress(BerError):
            decode_community_message(data)


# --- v3 keys ---------------------------------------------------------------------------------------------------


def test_keys_match_rfc_3414_vectors() -> None:
    engine = bytes.fromhex("000000000000000000000002")
    assert localized_key(b"maplesyrup", "md5", engine).hex() == "526f5eed9fcce26f8964c2930787d82b"
    assert localized_key(b"maplesyrup", "sha1", engine).hex() == "6695febc9288e36282235fc7151f128497b38f3f"


@pytest.mark.parametrize("priv", sorted(PRIV_PROTOCOLS))
@pytest.mark.parametrize("auth", ["md5", "sha1", "sha256", "sha512"])
def test_priv_keys_match_pysnmp(auth: str, priv: str) -> None:
    import pysnmp.proto.secmod.rfc3414.service  # noqa: F401 - imports the modules below in working order
    from pysnmp.proto.secmod.eso.priv import aes192, aes256
    from pysnmp.proto.secmod.rfc3414 import localkey
    from pysnmp.proto.secmod.rfc3414.auth import hmacmd5, hmacsha
    from pysnmp.proto.secmod.rfc3414.priv import des
    from pysnmp.proto.secmod.rfc3826.priv import aes
    from pysnmp.proto.secmod.rfc7860.auth import hmacsha2

    services = {"DES": des.Des(), "AES": aes.Aes(), "AES192": aes192.AesBlumenthal192(),
                "AES256": aes256.AesBlumenthal256(), "AES192C": aes192.Aes192(), "AES256C": aes256.Aes256()}
    auth_ids = {"md5": hmacmd5.HmacMd5.SERVICE_ID, "sha1": hmacsha.HmacSha.SERVICE_ID,
                "sha256": hmacsha2.HmacSha2.SHA256_SERVICE_ID, "sha512": hmacsha2.HmacSha2.SHA512_SERVICE_ID}
    engine = bytes.fromhex("80001f88804d2f0e6c51c1d66800000000")
    service = services[priv]
    master = localkey.hash_passphrase(b"privpass-1234", getattr(hashlib, auth))
    theirs = bytes(service.localize_key(auth_ids[auth], master, localkey.univ.OctetString(engine)))
    ours = priv_key_for(priv, b"privpass-1234", auth, engine)
    assert ours[:len(theirs)] == theirs


# --- settings ----------------------------------------------------------------------------------------------------


def test_defaults_are_snmp_exporters() -> None:
    settings = SnmpSettings()
    assert (settings.auth.version, settings.max_repetitions, settings.retries, settings.timeout) == (2, 25, 3, 5.0)
    plan = settings.plan()
    assert [".".join(map(str, oid)) for oid in plan.walk] == ["1.3.6.1.2.1.2", "1.3.6.1.2.1.31.1.1"]
    assert {"if_mib", "system"} <= set(builtin_modules())
    assert builtin_modules()["system"].snmp.plan().walk == [(1, 3, 6, 1, 2, 1, 1)]


def _secret_file(tmp_path: Any, text: str) -> dict[str, str]:
    path = tmp_path / f"secret-{abs(hash(text))}"
    path.write_text(text + "\n", encoding="utf-8")
    return {"file": str(path)}


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        pytest.param({"version": 3}, "version 3 needs a username", id="v3 without user"),
        pytest.param({"version": 3, "username": "u", "security_level": "authNoPriv", "password": "PASS"},
                     "needs auth_protocol", id="no default auth protocol"),
        pytest.param({"version": 3, "username": "u", "security_level": "authPriv", "auth_protocol": "SHA",
                      "password": "PASS", "priv_password": "PASS"}, "needs priv_protocol", id="no default priv"),
        pytest.param({"version": 3, "username": "u", "password": "PASS"}, "password is given but security_level",
                     id="keys without a level"),
        pytest.param({"version": 3, "username": "u", "security_level": "authNoPriv", "auth_protocol": "SHA",
                      "password": "SHORT"}, "shorter than 8", id="short password"),
        pytest.param({"version": 3, "username": "u", "community": "x"}, "community only applies",
                     id="community with v3"),
        pytest.param({"version": 2, "username": "u"}, "only apply to version 3", id="v3 field with v2"),
        pytest.param({"version": 2, "community": ""}, "must not be empty", id="empty community"),
        pytest.param({"version": 3, "username": "u", "security_level": "authNoPriv", "auth_protocol": "SHA1",
                      "password": "PASS"}, "auth_protocol", id="unknown protocol"),
    ],
)
def test_bad_auth_is_refused_at_load(tmp_path: Any, auth: dict[str, Any], message: str) -> None:
    for key in ("password", "priv_password"):
        if auth.get(key) == "PASS":
            auth[key] = _secret_file(tmp_path, "long-enough-secret")
        elif auth.get(key) == "SHORT":
            auth[key] = _secret_file(tmp_path, "short")
    with pytest.raises(ValidationError, match=message):
        SnmpSettings.model_validate({"auth": auth})


def test_inline_passwords_are_refused() -> None:
    with pytest.raises(ValidationError, match="never inline"):
        SnmpSettings.model_validate({"auth": {"version": 3, "username": "u", "security_level": "authNoPriv",
                                              "auth_protocol": "SHA", "password": "inline-password"}})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"include": ["nope"]}, "unknown catalogue module", id="unknown include"),
        pytest.param({"walk": ["1.3.6.x"]}, "invalid OID", id="bad oid"),
        pytest.param({"include": [], "walk": ["1.3.6.1"]}, "no metrics", id="nothing to export"),
        pytest.param({"include": [], "metrics": [{"name": "ifMtu", "oid": "1.3.6.1.2.1.2.2.1.4", "type": "gauge"}]},
                     "neither walks nor gets", id="nothing to walk"),
        pytest.param({"walk": ["1.3.6.1"], "metrics": [{"name": "ifMtu", "oid": "1.3.6.1.4.1.9", "type": "counter"}]},
                     "is a catalogue gauge; it cannot be a counter", id="catalogue name redefined"),
        pytest.param({"walk": ["1.3.6.1"], "metrics": [{"name": "egov_x", "oid": "1.3.6.1.4.1.9", "type": "gauge"}]},
                     "are the agent's own", id="agent's own prefix"),
        pytest.param({"walk": ["1.3.6.1"], "metrics": [{
            "name": "ifMtu", "oid": "1.3.6.1.2.1.2.2.1.4", "type": "gauge",
            "indexes": [{"labelname": "target", "type": "gauge"}]}]}, "added by the agent", id="reserved label"),
        pytest.param({"walk": ["1.3.6.1"], "metrics": [{
            "name": "ifMtu", "oid": "1.3.6.1.2.1.2.2.1.4", "type": "gauge",
            "lookups": [{"labels": ["ifIndex"], "labelname": "ifName", "oid": "1.3.6.1.2.1.31.1.1.1.1"}]}]},
            "no index or earlier lookup", id="lookup without index"),
        pytest.param({"max_repetitions": 0}, "greater than or equal to 1", id="zero repetitions"),
        pytest.param({"timeout": "0s"}, "greater than zero", id="zero timeout"),
        pytest.param({"regex_extracts": {}}, "Extra inputs", id="unsupported snmp_exporter option"),
    ],
)
def test_bad_module_is_refused_at_load(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SnmpSettings.model_validate(body)


def test_user_module_in_snmp_exporter_format_loads() -> None:
    settings = SnmpSettings.model_validate({
        "walk": ["1.3.6.1.2.1.31.1.1.1.6"],
        "metrics": [{"name": "ifHCInOctets", "oid": "1.3.6.1.2.1.31.1.1.1.6", "type": "counter",
                     "indexes": [{"labelname": "ifIndex", "type": "gauge"}],
                     "lookups": [{"labels": ["ifIndex"], "labelname": name, "oid": oid, "type": "DisplayString"}
                                 for name, oid in (("ifAlias", "1.3.6.1.2.1.31.1.1.1.18"),
                                                   ("ifDescr", "1.3.6.1.2.1.2.2.1.2"),
                                                   ("ifName", "1.3.6.1.2.1.31.1.1.1.1"))]}],
    })
    assert settings.plan().walk == [(1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6)]


def test_secrets_never_show_in_the_dump(tmp_path: Any) -> None:
    settings = SnmpSettings.model_validate({"auth": {
        "version": 3, "username": "mon", "security_level": "authPriv", "auth_protocol": "SHA256",
        "password": _secret_file(tmp_path, "S3CR3T-auth-pass"), "priv_protocol": "AES",
        "priv_password": _secret_file(tmp_path, "S3CR3T-priv-pass")}})
    v2 = SnmpSettings.model_validate({"auth": {"community": "S3CR3T-community"}})
    dumped = repr([settings.model_dump(mode="json"), v2.model_dump(mode="json"), settings, v2])
    assert "S3CR3T" not in dumped


def test_insecure_auth_is_named_for_check_config(tmp_path: Any) -> None:
    assert "clear text" in snmp.insecure_settings(SnmpSettings())[0]
    md5 = SnmpSettings.model_validate({"auth": {
        "version": 3, "username": "u", "security_level": "authPriv", "auth_protocol": "MD5",
        "password": _secret_file(tmp_path, "authpassword"), "priv_protocol": "DES",
        "priv_password": _secret_file(tmp_path, "privpassword")}})
    assert [r.split()[1] for r in snmp.insecure_settings(md5)] == ["MD5", "DES"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [("udp://10.1.2.3", ("10.1.2.3", 161)), ("10.1.2.3:1161", ("10.1.2.3", 1161)),
     ("udp://[2001:db8::1]:162", ("2001:db8::1", 162)), ("2001:db8::1", ("2001:db8::1", 161)),
     ("router.example", ("router.example", 161))],
)
def test_targets(target: str, expected: tuple[str, int]) -> None:
    assert split_target(target) == expected


@pytest.mark.parametrize("target", ["tcp://10.1.2.3", "10.1.2.3:0", "10.1.2.3:http", "udp://", "[::1]x"])
def test_bad_targets(target: str) -> None:
    with pytest.raises(ValueError, match="target"):
        split_target(target)


# --- snmp_exporter's rendering rules -------------------------------------------------------------------------


async def test_rendering_follows_snmp_exporter() -> None:
    from collectors._snmp_ber import IP_ADDRESS, OBJECT_IDENTIFIER, OCTET_STRING

    table = (1, 3, 6, 1, 4, 1, 99, 1)
    index = [{"labelname": "ifIndex", "type": "gauge"}]
    lookup = [{"labels": ["ifIndex"], "labelname": "ifName", "oid": "1.3.6.1.4.1.99.1.9", "type": "DisplayString"}]

    def metric(name: str, column: int, type_: str, **extra: Any) -> MetricDef:
        return MetricDef.model_validate({"name": name, "oid": f"1.3.6.1.4.1.99.1.{column}", "type": type_,
                                         "indexes": index, "lookups": lookup, **extra})

    plan = compile_plan([], [], [
        metric("mac", 1, "PhysAddress48"), metric("blob", 2, "OctetString"), metric("text", 3, "DisplayString"),
        metric("kind", 4, "EnumAsInfo", enum_values={1: "up", 2: "down"}),
        metric("state", 5, "EnumAsStateSet", enum_values={1: "up", 2: "down"}),
        metric("flags", 6, "Bits", enum_values={0: "a", 9: "b"}), metric("octets", 7, "counter"),
        metric("when", 8, "DateAndTime"), metric("addr", 10, "InetAddressIPv4"), metric("ref", 11, "OctetString"),
    ])
    vbs = [
        VarBind((*table, 1, 5), OCTET_STRING, bytes.fromhex("02fc00000001")),
        VarBind((*table, 2, 5), OCTET_STRING, b"\x01\xab"),
        VarBind((*table, 3, 5), OCTET_STRING, b"\xff\xfe not utf-8"),
        VarBind((*table, 3, 6), OCTET_STRING, "Việt Nam".encode()),
        VarBind((*table, 4, 5), 0x02, 2), VarBind((*table, 4, 6), 0x02, 7),
        VarBind((*table, 5, 5), 0x02, 1),
        VarBind((*table, 6, 5), OCTET_STRING, b"\x80\x40"),
        VarBind((*table, 7, 5), COUNTER64, 2**64 - 1),
        VarBind((*table, 8, 5), OCTET_STRING, bytes([0x07, 0xEA, 11, 27, 13, 30, 15, 0, ord("+"), 7, 0])),
        VarBind((*table, 9, 5), OCTET_STRING, b"ge-0/0/5"),
        VarBind((*table, 10, 5), IP_ADDRESS, b"\x0a\x00\x00\x01"),
        VarBind((*table, 11, 5), OBJECT_IDENTIFIER, (0, 0)),
    ]
    sink = MetricSink({spec.name: spec for spec in plan.specs})
    await render(plan, vbs, sink)
    got = samples_of(sink.samples())
    five = 'ifIndex="5",ifName="ge-0/0/5"'
    assert got[f'mac{{{five},mac="02:FC:00:00:00:01"}}'] == 1
    assert got[f'blob{{blob="0x01AB",{five}}}'] == 1
    assert got[f'text{{{five},text="0xFFFE206E6F74207574662D38"}}'] == 1
    assert got['text{ifIndex="6",ifName="",text="Việt Nam"}'] == 1
    assert got[f'kind_info{{{five},kind="down"}}'] == 1
    assert got['kind_info{ifIndex="6",ifName="",kind="7"}'] == 1
    assert (got[f'state{{{five},state="up"}}'], got[f'state{{{five},state="down"}}']) == (1, 0)
    assert (got[f'flags{{flags="a",{five}}}'], got[f'flags{{flags="b",{five}}}']) == (1, 1)
    assert got[f"octets{{{five}}}"] == (2**64 - 1) % 2**53
    assert got[f"when{{{five}}}"] == dt.datetime(2026, 11, 27, 6, 30, 15, tzinfo=dt.UTC).timestamp()  # +07:00
    assert got[f'addr{{addr="10.0.0.1",{five}}}'] == 1
    assert got[f'ref{{{five},ref="0.0"}}'] == 1


# --- walks against a scripted agent ----------------------------------------------------------------------------


async def test_walk_exports_if_mib_names_and_lookups() -> None:
    agent = await ScriptedAgent(mib_agent(if_table(60))).start()
    try:
        result = await probe(if_mib(max_repetitions=10), agent.target)
    finally:
        agent.close()
    assert result.success, result.error
    got = samples_of(result.samples)
    labels = 'ifAlias="uplink 1",ifDescr="port1",ifIndex="1",ifName="ge-0/0/1"'
    assert got[f"ifHCInOctets{{{labels}}}"] == (2**64 - 1) % 2**53
    assert got[f"ifInOctets{{{labels}}}"] == 2**32 - 2
    assert got[f'ifType_info{{{labels},ifType="ethernetCsmacd"}}'] == 1
    assert got['ifOperStatus{ifAlias="",ifDescr="port2",ifIndex="2",ifName="ge-0/0/2"}'] == 2
    assert got["sysUpTime"] == 12345 and got["ifNumber"] == 60
    assert got["snmp_scrape_pdus_returned"] == 2 + 10 * 60
    bulk = [r for r in agent.requests if r.pdu_type == "getBulkRequest"]
    assert {r.max_repetitions for r in bulk} == {10}
    assert got["snmp_scrape_packets_sent"] == len(agent.requests) and got["snmp_scrape_packets_retried"] == 0


async def test_link_health_from_consecutive_runs() -> None:
    from pysnmp.proto import rfc1902

    mib = if_table(3)
    agent = await ScriptedAgent(mib_agent(mib)).start()
    try:
        first = await probe(if_mib(), agent.target)
        started = time.monotonic()
        await asyncio.sleep(0.2)
        mib[(1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10, 1)] = rfc1902.Counter64(10**9 + 25_000_000)  # 200 Mbit out
        mib[(1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 2)] = rfc1902.Integer32(1)  # port 2 came up
        mib[(1, 3, 6, 1, 2, 1, 2, 2, 1, 9, 3)] = rfc1902.TimeTicks(999)  # port 3 went down and up again
        second = await probe(if_mib(), agent.target)
        elapsed = time.monotonic() - started
        third = await probe(if_mib(link_health=False), agent.target)
    finally:
        agent.close()
    assert first.success and second.success, (first.error, second.error)
    before, after = samples_of(first.samples), samples_of(second.samples)
    one = 'ifAlias="uplink 1",ifDescr="port1",ifIndex="1",ifName="ge-0/0/1"'
    assert not any(k.startswith("egov_interface_utilization_ratio") for k in before)
    assert before[f"egov_interface_state_changes_total{{{one}}}"] == 0
    assert after[f'egov_interface_utilization_ratio{{direction="in",{one}}}'] == 0
    out = after[f'egov_interface_utilization_ratio{{direction="out",{one}}}']
    assert 25_000_000 * 8 / (elapsed * 1e9) <= out <= 25_000_000 * 8 / (0.2 * 1e9)
    changes = {k.split('ifIndex="')[1][0]: v for k, v in after.items()
               if k.startswith("egov_interface_state_changes_total")}
    assert changes == {"1": 0, "2": 1, "3": 2}
    assert not any(s.name.startswith("egov_interface") for s in third.samples)


async def test_garbage_and_stale_replies_are_dropped() -> None:
    serve = mib_agent(if_table(3))

    def noisy(request: Any) -> list[bytes]:
        good = serve(request)[0]
        stale = response(request, [((1, 3, 6, 1, 2, 1, 2, 1, 0), None)], request_id=request.request_id + 1000)
        return [os.urandom(40), good[:len(good) // 2], b"\x30\x03\x02\x01", stale, good]

    agent = await ScriptedAgent(noisy).start()
    try:
        result = await probe(if_mib(), agent.target)
    finally:
        agent.close()
    assert result.success, result.error
    assert samples_of(result.samples)["ifNumber"] == 3


async def test_lost_requests_are_retried_and_counted() -> None:
    serve = mib_agent(if_table(3))
    seen: set[int] = set()

    def lossy(request: Any) -> list[bytes]:
        if request.request_id not in seen:  # drop the first copy of every request
            seen.add(request.request_id)
            return []
        return serve(request)

    agent = await ScriptedAgent(lossy).start()
    try:
        result = await probe(if_mib(timeout="100ms", retries=1), agent.target)
    finally:
        agent.close()
    assert result.success, result.error
    got = samples_of(result.samples)
    assert got["snmp_scrape_packets_retried"] == len(seen) and got["snmp_scrape_packets_sent"] == 2 * len(seen)


@pytest.mark.parametrize(
    ("misbehaviour", "message", "partial"),
    [
        pytest.param("same_oid", "not increasing", True, id="the same OID forever"),
        pytest.param("backwards", "not increasing", True, id="OIDs going backwards"),
        pytest.param("endless", "max_rows=5000", False, id="an endless table"),
        pytest.param("error_status", "genErr", False, id="an error status"),
    ],
)
async def test_misbehaving_walks_stop_with_protocol_error(misbehaviour: str, message: str, partial: bool) -> None:
    """Only ifXTable misbehaves: alone, it fails as a subtree and the rest is reported; the row cap ends the run,
    and an error status on every walk fails them all."""
    def rows(request: Any) -> list[bytes]:
        start = request.oids[0]
        if misbehaviour == "error_status":
            return [response(request, [], error_status=5)]
        if request.pdu_type == "getRequest":
            return [response(request, [(oid, _octets("x")) for oid in request.oids])]
        if misbehaviour == "same_oid":
            return [response(request, [((*IF_NAME, 1), _octets("eth"))])]
        if misbehaviour == "backwards":
            first = start[-1] if len(start) > len(IF_NAME) else 100
            return [response(request, [((*IF_NAME, first - 1), _octets("eth"))])]
        if misbehaviour == "error_status":
            return [response(request, [], error_status=5)]
        last = start[-1] if len(start) > len(IF_NAME) else 0
        return [response(request, [((*IF_NAME, last + i), _octets("eth")) for i in range(1, 26)])]

    agent = await ScriptedAgent(rows).start()
    try:
        result = await probe(if_mib(max_rows=5000), agent.target, module_timeout=10)
    finally:
        agent.close()
    assert len(agent.requests) < 300
    if not partial:
        assert result.outcome is Outcome.PROTOCOL_ERROR, result.error
        assert message in result.error
        return
    assert result.success, result.error
    assert result.partial_errors == {"subtree": 1}
    got = samples_of(result.samples)
    assert got['egov_snmp_subtree_success{subtree="1.3.6.1.2.1.31.1.1"}'] == 0
    assert got['egov_snmp_subtree_success{subtree="1.3.6.1.2.1.2"}'] == 1
    assert got['egov_snmp_subtree_success{subtree="get"}'] == 1
    assert any(message in line.message and line.level == "warning" for line in result.lines)


async def test_nonincreasing_oids_allowed_still_end_at_the_row_cap() -> None:
    agent = await ScriptedAgent(lambda r: [response(r, [((*IF_NAME, 1), _octets("eth"))] * 25)]).start()
    try:
        result = await probe(if_mib(allow_nonincreasing_oids=True, max_rows=1000), agent.target)
    finally:
        agent.close()
    assert result.outcome is Outcome.PROTOCOL_ERROR and "max_rows=1000" in result.error


async def test_silent_agent_ends_within_the_deadline() -> None:
    agent = await ScriptedAgent(lambda request: []).start()
    started = time.monotonic()
    try:
        result = await probe(if_mib(timeout="5s", retries=3), agent.target, module_timeout=1.0)
    finally:
        agent.close()
    assert result.outcome is Outcome.TIMEOUT
    assert time.monotonic() - started < 1.3


async def test_slow_agent_times_out_each_request_and_reports_it() -> None:
    agent = await ScriptedAgent(mib_agent(if_table(2)), delay=0.3).start()
    try:
        result = await probe(if_mib(timeout="100ms", retries=1), agent.target)
    finally:
        agent.close()
    assert result.outcome is Outcome.TIMEOUT
    assert "2 attempts of 0.1s" in result.error and "wrong community" in result.error
    assert samples_of(result.samples)["snmp_scrape_packets_sent"] == 2


async def test_agent_gone_mid_walk_is_connection_failed() -> None:
    serve = mib_agent(if_table(60))
    agent: ScriptedAgent

    def dies(request: Any) -> list[bytes]:
        if len(agent.requests) == 5:
            asyncio.get_running_loop().call_soon(agent.close)  # the device restarts: its port is closed
        return serve(request)

    agent = await ScriptedAgent(dies).start()
    started = time.monotonic()
    result = await probe(if_mib(max_repetitions=5), agent.target)
    assert result.outcome is Outcome.CONNECTION_FAILED, result.error
    assert time.monotonic() - started < 0.5
    assert samples_of(result.samples)["snmp_scrape_pdus_returned"] > 0


async def test_closed_port_fails_fast_without_leaking(tmp_path: Any) -> None:
    port = free_udp_port()
    tasks_before = len(asyncio.all_tasks())
    fds_before = len(list(Path("/proc/self/fd").iterdir()))
    started = time.monotonic()
    for _ in range(200):
        result = await probe(if_mib(), f"127.0.0.1:{port}")
        assert result.outcome is Outcome.CONNECTION_FAILED, result.error
    assert time.monotonic() - started < 10
    assert "nothing listens on udp/" in result.error
    await asyncio.sleep(0.01)  # the last transport closes its socket on the next loop iteration
    assert len(asyncio.all_tasks()) == tasks_before
    assert len(list(Path("/proc/self/fd").iterdir())) == fds_before


async def test_unresolvable_name_is_resolve_failed() -> None:
    result = await probe(if_mib(), f"udp://{UNRESOLVABLE_HOST}")
    assert result.outcome is Outcome.RESOLVE_FAILED


async def test_rendering_a_large_table_yields_to_the_event_loop() -> None:
    table = (1, 3, 6, 1, 2, 1, 2, 2, 1, 10)
    vbs = [VarBind((*table, i), 0x41, i) for i in range(1, 5001)]
    plan = SnmpSettings().plan()
    sink = MetricSink(snmp.SPEC.catalog)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await render(plan, vbs, sink)
    task.cancel()
    assert len(sink.samples()) == 5000
    assert ticks >= 5000 // 256


def _octets(text: str) -> Any:
    from pysnmp.proto import rfc1902

    return rfc1902.OctetString(text)


def _request_for(oids: list[tuple[int, ...]]) -> Any:
    from fakes.snmp import decode_request

    return decode_request(encode_community_message(1, b"public", encode_pdu(0xA0, 4242, oids)))


def test_oid_parsing() -> None:
    assert parse_oid(".1.3.6.1.2.1") == (1, 3, 6, 1, 2, 1)
    for bad in ("", "1", "3.1", "1.40", "1.3.-1", "1.3.x"):
        with pytest.raises(ValueError, match="OID"):
            parse_oid(bad)
