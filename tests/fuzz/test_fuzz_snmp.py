"""Fuzzed SNMP responses: the BER decoder refuses damaged or random datagrams with BerError, never anything else."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors import _snmp_ber as ber

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
OIDS = st.lists(st.integers(0, 2**32 - 1), min_size=2, max_size=14).map(
    lambda arcs: (1, 3, *arcs[2:]) if arcs else (1, 3))
VALUES = st.one_of(
    st.integers(-2**31, 2**31 - 1).map(lambda v: ber.encode_int(v)),
    st.binary(max_size=40).map(ber.encode_octets),
    st.integers(0, 2**32 - 1).map(lambda v: ber.encode_int(v, ber.COUNTER32)),
    st.integers(0, 2**64 - 1).map(lambda v: ber.encode_int(v, ber.COUNTER64)),
    st.integers(0, 2**32 - 1).map(lambda v: ber.encode_int(v, ber.TIMETICKS)),
    st.binary(min_size=4, max_size=4).map(lambda v: ber.tlv(ber.IP_ADDRESS, v)),
    st.just(ber.tlv(ber.NULL, b"")), st.just(ber.tlv(ber.NO_SUCH_OBJECT, b"")),
    st.just(ber.tlv(ber.END_OF_MIB_VIEW, b"")), OIDS.map(ber.encode_oid),
    st.binary(max_size=12).map(lambda v: ber.tlv(ber.OPAQUE, v)),
)


def response(request_id: int, varbinds: list[tuple[tuple[int, ...], bytes]], community: bytes) -> bytes:
    bound = b"".join(ber.tlv(ber.SEQUENCE, ber.encode_oid(oid) + value) for oid, value in varbinds)
    body = ber.encode_int(request_id) + ber.encode_int(0) + ber.encode_int(0) + ber.tlv(ber.SEQUENCE, bound)
    return ber.encode_community_message(1, community, ber.tlv(0xA2, body))


def decode(data: bytes) -> None:
    with contextlib.suppress(ber.BerError):
        ber.decode_community_message(data)


@FUZZ
@given(st.integers(0, 2**31 - 1), st.lists(st.tuples(OIDS, VALUES), max_size=8), st.binary(max_size=16))
def test_valid_responses_decode(request_id: int, varbinds: list[tuple[tuple[int, ...], bytes]],
                                community: bytes) -> None:
    version, got_community, pdu = ber.decode_community_message(response(request_id, varbinds, community))
    assert (version, got_community, pdu.request_id) == (1, community, request_id)
    assert [vb.oid for vb in pdu.varbinds] == [oid for oid, _ in varbinds]


@FUZZ
@given(st.integers(0, 2**31 - 1), st.lists(st.tuples(OIDS, VALUES), max_size=8), st.data())
def test_mutated_responses_are_refused_cleanly(request_id: int, varbinds: list[tuple[tuple[int, ...], bytes]],
                                                data: st.DataObject) -> None:
    raw = bytearray(response(request_id, varbinds, b"public"))
    for _ in range(data.draw(st.integers(1, 5))):
        position = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate"]))
        if action == "flip":
            raw[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set":
            raw[position] = data.draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x84, 0x89, 0xFF]))
        elif action == "delete":
            del raw[position]
        elif action == "insert":
            raw[position:position] = data.draw(st.binary(min_size=1, max_size=6))
        else:
            del raw[position:]
        if not raw:
            break
    decode(bytes(raw))


@FUZZ
@given(st.binary(max_size=600))
def test_random_datagrams_are_refused_cleanly(data: bytes) -> None:
    decode(data)
