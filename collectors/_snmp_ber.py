"""The BER subset SNMP uses: request encoding and a lean decoder for responses.

Why not pysnmp/pyasn1 here: pyasn1 builds a schema object per value, and decoding is most of a walk's CPU. On
the if_mib walk of a 101-interface snmpd (tests/bench/bench_snmp.py), pysnmp 7.1's bulk_walk_cmd managed about
9k varbinds per CPU-second, snmp_exporter 0.21 73k-93k, and the agent with this decoder 95k-98k, rendering to
Prometheus text included (decoding itself is about 1.2 us per varbind). It reads varbinds straight into tuples
and ints and refuses anything malformed with BerError, which the session counts and drops like any other
garbage datagram.
"""

from __future__ import annotations

from typing import NamedTuple

INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
SEQUENCE = 0x30
IP_ADDRESS = 0x40
COUNTER32 = 0x41
GAUGE32 = 0x42
TIMETICKS = 0x43
OPAQUE = 0x44
COUNTER64 = 0x46
NO_SUCH_OBJECT = 0x80
NO_SUCH_INSTANCE = 0x81
END_OF_MIB_VIEW = 0x82

GET = 0xA0
GET_NEXT = 0xA1
RESPONSE = 0xA2
GET_BULK = 0xA5
REPORT = 0xA8

UNSIGNED_TAGS = frozenset((COUNTER32, GAUGE32, TIMETICKS, COUNTER64))
EXCEPTION_TAGS = frozenset((NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW))

Oid = tuple[int, ...]
Value = int | bytes | Oid | float | None


class VarBind(NamedTuple):
    """One decoded variable: its OID, the BER tag of its value, and the value (int, bytes, OID, float or None)."""

    oid: Oid
    tag: int
    value: Value


class Pdu(NamedTuple):
    """A decoded PDU."""

    type: int
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[VarBind]


class BerError(ValueError):
    """The bytes are not the BER that SNMP sends."""


def parse_oid(text: str) -> Oid:
    """'1.3.6.1.2.1' or '.1.3.6.1.2.1' to a tuple of ints; ValueError if it is not a valid OID."""
    parts = text.strip().lstrip(".").split(".")
    try:
        oid = tuple(int(part) for part in parts)
    except ValueError:
        raise ValueError(f"invalid OID {text!r}: use dotted numbers such as 1.3.6.1.2.1.2") from None
    if len(oid) < 2 or oid[0] > 2 or (oid[0] < 2 and oid[1] >= 40) or any(n < 0 or n >= 1 << 32 for n in oid):
        raise ValueError(f"invalid OID {text!r}")
    return oid


def format_oid(oid: Oid) -> str:
    """A tuple OID in dotted form, without a leading dot."""
    return ".".join(map(str, oid))


# ---------------------------------------------------------------------------------------------- encoding


def tlv(tag: int, content: bytes) -> bytes:
    """One BER element with a definite length."""
    length = len(content)
    if length < 0x80:
        return bytes((tag, length)) + content
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big") + content


def encode_int(value: int, tag: int = INTEGER) -> bytes:
    """A signed INTEGER (or an application integer type with `tag`)."""
    size = value.bit_length() // 8 + 1
    return tlv(tag, value.to_bytes(size, "big", signed=True))


def encode_octets(value: bytes) -> bytes:
    """An OCTET STRING."""
    return tlv(OCTET_STRING, value)


def encode_oid(oid: Oid) -> bytes:
    """An OBJECT IDENTIFIER."""
    out = bytearray()
    for arc in (oid[0] * 40 + oid[1], *oid[2:]):
        if arc < 0x80:
            out.append(arc)
            continue
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return tlv(OBJECT_IDENTIFIER, bytes(out))


def encode_pdu(pdu_type: int, request_id: int, oids: list[Oid], non_repeaters: int = 0,
               max_repetitions: int = 0) -> bytes:
    """A request PDU with NULL values; for GETBULK the two error fields carry non-repeaters and max-repetitions."""
    varbinds = b"".join(tlv(SEQUENCE, encode_oid(oid) + b"\x05\x00") for oid in oids)
    return tlv(pdu_type, encode_int(request_id) + encode_int(non_repeaters) + encode_int(max_repetitions)
               + tlv(SEQUENCE, varbinds))


def encode_community_message(version: int, community: bytes, pdu: bytes) -> bytes:
    """An SNMPv1 (version 0) or SNMPv2c (version 1) message."""
    return tlv(SEQUENCE, encode_int(version) + encode_octets(community) + pdu)


# ---------------------------------------------------------------------------------------------- decoding


def read_header(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at `pos`; BerError if it overruns the data."""
    try:
        tag = data[pos]
        length = data[pos + 1]
        pos += 2
        if length & 0x80:
            size = length & 0x7F
            if size == 0 or size > 4:
                raise BerError("unsupported BER length")
            length = int.from_bytes(data[pos:pos + size], "big")
            pos += size
    except IndexError:
        raise BerError("truncated BER element") from None
    end = pos + length
    if end > len(data):
        raise BerError("BER element longer than the datagram")
    return tag, pos, end


def read_int(data: bytes, pos: int, expect: int = INTEGER) -> tuple[int, int]:
    """(value, position after) of a signed INTEGER at `pos`."""
    tag, start, end = read_header(data, pos)
    if tag != expect or start == end:
        raise BerError(f"expected INTEGER, got tag 0x{tag:02x}")
    return int.from_bytes(data[start:end], "big", signed=True), end


def read_octets(data: bytes, pos: int) -> tuple[bytes, int]:
    """(value, position after) of an OCTET STRING at `pos`."""
    tag, start, end = read_header(data, pos)
    if tag != OCTET_STRING:
        raise BerError(f"expected OCTET STRING, got tag 0x{tag:02x}")
    return data[start:end], end


def decode_community_message(data: bytes) -> tuple[int, bytes, Pdu]:
    """(version, community, PDU) of an SNMPv1/v2c message."""
    tag, pos, _ = read_header(data, 0)
    if tag != SEQUENCE:
        raise BerError("not an SNMP message")
    version, pos = read_int(data, pos)
    community, pos = read_octets(data, pos)
    return version, community, decode_pdu(data, pos)


def decode_pdu(data: bytes, pos: int) -> Pdu:
    """The PDU at `pos`: type, request-id, error-status, error-index and its varbinds."""
    pdu_type, pos, end = read_header(data, pos)
    if pdu_type & 0xE0 != 0xA0:
        raise BerError(f"not a PDU: tag 0x{pdu_type:02x}")
    request_id, pos = read_int(data, pos)
    error_status, pos = read_int(data, pos)
    error_index, pos = read_int(data, pos)
    tag, pos, list_end = read_header(data, pos)
    if tag != SEQUENCE or list_end > end:
        raise BerError("bad varbind list")
    return Pdu(pdu_type, request_id, error_status, error_index, decode_varbinds(data, pos, list_end))


def decode_varbinds(data: bytes, pos: int, end: int) -> list[VarBind]:
    """The varbinds between `pos` and `end`; the hot loop of every walk, hence inlined length parsing."""
    out: list[VarBind] = []
    append = out.append
    try:
        while pos < end:
            if data[pos] != SEQUENCE:
                raise BerError("varbind is not a SEQUENCE")
            length = data[pos + 1]
            pos += 2
            if length & 0x80:
                size = length & 0x7F
                length = int.from_bytes(data[pos:pos + size], "big")
                pos += size
            vb_end = pos + length
            if data[pos] != OBJECT_IDENTIFIER:
                raise BerError("varbind name is not an OID")
            length = data[pos + 1]
            pos += 2
            if length & 0x80:
                size = length & 0x7F
                length = int.from_bytes(data[pos:pos + size], "big")
                pos += size
            raw = data[pos:pos + length]
            pos += length
            oid = _oid(raw)
            tag = data[pos]
            length = data[pos + 1]
            pos += 2
            if length & 0x80:
                size = length & 0x7F
                length = int.from_bytes(data[pos:pos + size], "big")
                pos += size
            if pos + length != vb_end or vb_end > end:
                raise BerError("varbind length does not add up")
            value: Value
            if tag in UNSIGNED_TAGS:
                value = int.from_bytes(data[pos:vb_end], "big")
            elif tag == INTEGER:
                value = int.from_bytes(data[pos:vb_end], "big", signed=True)
            elif tag in (OCTET_STRING, IP_ADDRESS):
                value = data[pos:vb_end]
            elif tag == OBJECT_IDENTIFIER:
                value = _oid(data[pos:vb_end])
            elif tag == OPAQUE:
                value = _opaque(data[pos:vb_end])
            else:
                value = None
            append(VarBind(oid, tag, value))
            pos = vb_end
    except IndexError:
        raise BerError("truncated varbind") from None
    return out


def _oid(raw: bytes) -> Oid:
    if not raw:
        raise BerError("empty OID")
    first = raw[0]
    if raw.isascii():  # every arc below 128: the common case, decoded in C
        if first < 80:
            return (first // 40, first % 40, *raw[1:])
        return (2, first - 80, *raw[1:])
    arcs: list[int] = []
    arc = 0
    for byte in raw:
        arc = (arc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(arc)
            arc = 0
    if raw[-1] & 0x80:
        raise BerError("OID ends inside an arc")
    first = arcs[0]
    head = (first // 40, first % 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


def _opaque(raw: bytes) -> Value:
    """Net-SNMP's float and double inside Opaque (tags 0x9f78 and 0x9f79); other Opaque stays bytes."""
    import struct

    if len(raw) == 7 and raw[:3] == b"\x9f\x78\x04":
        return float(struct.unpack(">f", raw[3:])[0])
    if len(raw) == 11 and raw[:3] == b"\x9f\x79\x08":
        return float(struct.unpack(">d", raw[3:])[0])
    return raw
