"""SNMPv3 messages with the User-based Security Model: keys (RFC 3414, 7860), AES (RFC 3826, Blumenthal and
Reeder key extension), DES, and the report PDUs that say why a device refused a request.

Written on the BER codec rather than on pysnmp so that v3 walks share v2c's lean decoder, and so one run owns its
socket and state outright (pysnmp's engine cannot be closed through public methods, lextudio/pysnmp#203, and must
not be shared by concurrent walks, #86). `cryptography` is imported only when a privacy protocol is used.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from collectors._snmp_ber import (
    OCTET_STRING,
    REPORT,
    SEQUENCE,
    BerError,
    Oid,
    Pdu,
    decode_pdu,
    encode_int,
    encode_octets,
    read_header,
    read_int,
    read_octets,
    tlv,
)

AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "AES", "AES192", "AES256", "AES192C", "AES256C"]
SecurityLevel = Literal["noAuthNoPriv", "authNoPriv", "authPriv"]

# hash name and the length of the truncated HMAC each protocol puts into msgAuthenticationParameters
AUTH_PROTOCOLS: dict[str, tuple[str, int]] = {
    "MD5": ("md5", 12), "SHA": ("sha1", 12), "SHA224": ("sha224", 16),
    "SHA256": ("sha256", 24), "SHA384": ("sha384", 32), "SHA512": ("sha512", 48),
}
# key size and how a too-short localized key is extended
PRIV_PROTOCOLS: dict[str, tuple[int, str]] = {
    "DES": (16, "des"), "AES": (16, "blumenthal"), "AES192": (24, "blumenthal"), "AES256": (32, "blumenthal"),
    "AES192C": (24, "reeder"), "AES256C": (32, "reeder"),
}

_USM_STATS = (1, 3, 6, 1, 6, 3, 15, 1, 1)
REPORT_REASONS: dict[Oid, str] = {
    (*_USM_STATS, 1, 0): "unsupported_security_level",
    (*_USM_STATS, 2, 0): "not_in_time_window",
    (*_USM_STATS, 3, 0): "unknown_user_name",
    (*_USM_STATS, 4, 0): "unknown_engine_id",
    (*_USM_STATS, 5, 0): "wrong_digest",
    (*_USM_STATS, 6, 0): "decryption_error",
    (1, 3, 6, 1, 6, 3, 12, 1, 1, 0): "unknown_context",
    (1, 3, 6, 1, 6, 3, 12, 1, 4, 0): "unavailable_context",
}
MAX_MESSAGE_SIZE = 65507
_FLAG_AUTH, _FLAG_PRIV, _FLAG_REPORTABLE = 0x01, 0x02, 0x04


class UsmError(Exception):
    """A v3 message that cannot be accepted (bad digest, cannot decrypt, unknown format)."""


@dataclass(slots=True)
class EngineState:
    """What discovery learned about the device's SNMP engine; kept between runs of the same target."""

    engine_id: bytes = b""
    boots: int = 0
    time: int = 0
    learned_at: float = 0.0

    def now(self) -> int:
        """The engine's time now, extrapolated from when it was learned."""
        return self.time + int(time.monotonic() - self.learned_at) if self.engine_id else 0

    def learn(self, engine_id: bytes, boots: int, engine_time: int) -> None:
        """Remember the authoritative engine's id, boots and time."""
        self.engine_id, self.boots, self.time, self.learned_at = engine_id, boots, engine_time, time.monotonic()


class V3Message(NamedTuple):
    """The parts of a received v3 message the security model needs."""

    msg_id: int
    flags: int
    engine_id: bytes
    boots: int
    time: int
    user: bytes
    auth_params: bytes
    auth_offset: int
    priv_params: bytes
    data: bytes
    encrypted: bool


class Usm:
    """One v3 user's keys and protocols; wraps request PDUs and unwraps responses for a given engine."""

    def __init__(self, user: str, level: SecurityLevel, auth_protocol: str | None, auth_password: str | None,
                 priv_protocol: str | None, priv_password: str | None, context_name: str = "") -> None:
        self.user = user.encode()
        self.level = level
        self.auth = AUTH_PROTOCOLS[auth_protocol] if level != "noAuthNoPriv" and auth_protocol else None
        self.priv = priv_protocol if level == "authPriv" else None
        self._auth_password = (auth_password or "").encode()
        self._priv_password = (priv_password or "").encode()
        self.context_name = context_name.encode()
        self._salt = int.from_bytes(os.urandom(8), "big")
        self._keys: tuple[bytes, bytes, bytes] | None = None

    @property
    def flags(self) -> int:
        """msgFlags of a request at this user's security level."""
        return _FLAG_REPORTABLE | (_FLAG_AUTH if self.auth else 0) | (_FLAG_PRIV if self.priv else 0)

    def discovery_message(self, msg_id: int, request_pdu: bytes) -> bytes:
        """A noAuthNoPriv request with an empty engine id, which the device answers with a report (RFC 3414 4)."""
        params = tlv(SEQUENCE, encode_octets(b"") + encode_int(0) + encode_int(0) + encode_octets(b"")
                     + encode_octets(b"") + encode_octets(b""))
        scoped = tlv(SEQUENCE, encode_octets(b"") + encode_octets(b"") + request_pdu)
        return _message(msg_id, _FLAG_REPORTABLE, params, scoped)

    def wrap(self, msg_id: int, pdu: bytes, engine: EngineState) -> bytes:
        """The request PDU as a v3 message for `engine`, encrypted and authenticated as the level requires."""
        auth_key, priv_key, _ = self._localized(engine.engine_id)
        engine_time = engine.now()
        scoped = tlv(SEQUENCE, encode_octets(engine.engine_id) + encode_octets(self.context_name) + pdu)
        priv_params = b""
        if self.priv:
            priv_params, scoped = self._encrypt(priv_key, engine.boots, engine_time, scoped)
        mac_len = self.auth[1] if self.auth else 0
        priv_tlv = encode_octets(priv_params)
        params = tlv(SEQUENCE, encode_octets(engine.engine_id) + encode_int(engine.boots) + encode_int(engine_time)
                     + encode_octets(self.user) + encode_octets(bytes(mac_len)) + priv_tlv)
        message = _message(msg_id, self.flags, params, scoped)
        if not self.auth:
            return message
        end = len(message) - len(scoped) - len(priv_tlv)
        mac = hmac.digest(auth_key, message, self.auth[0])[:mac_len]
        return message[:end - mac_len] + mac + message[end:]

    def unwrap(self, message: V3Message, raw: bytes, engine: EngineState) -> Pdu:
        """The PDU of a received message, after checking its digest and decrypting it; UsmError if it fails.

        Reports may come unauthenticated (a device cannot sign a report about a bad digest); anything else must
        carry this user's security level.
        """
        priv_key = b""
        if message.flags & _FLAG_AUTH:
            if not self.auth:
                raise UsmError("an authenticated message for a noAuthNoPriv user")
            auth_key, priv_key, _ = self._localized(message.engine_id)
            hash_name, mac_len = self.auth
            blanked = raw[:message.auth_offset] + bytes(mac_len) + raw[message.auth_offset + mac_len:]
            expected = hmac.digest(auth_key, blanked, hash_name)[:mac_len]
            if len(message.auth_params) != mac_len or not hmac.compare_digest(expected, message.auth_params):
                raise UsmError("the response's digest does not match: wrong auth password or auth_protocol")
            if message.engine_id == engine.engine_id:
                engine.learn(message.engine_id, message.boots, message.time)
        data = message.data
        if message.encrypted:
            if message.flags & 0x03 != 0x03 or not self.priv:
                raise UsmError("an encrypted message without authentication and privacy flags")
            try:
                pdu = _decode_scoped_pdu(self._decrypt(priv_key, message, data))
            except BerError as err:
                raise UsmError(f"cannot decrypt the response ({err}): wrong priv password or priv_protocol "
                               "(AES192/AES256 are Blumenthal, AES192C/AES256C Reeder)?") from None
        else:
            try:
                pdu = _decode_scoped_pdu(data)
            except BerError as err:
                raise UsmError(f"cannot decode the scoped PDU: {err}") from None
        if pdu.type != REPORT and (message.flags & 0x03) != (self.flags & 0x03):
            raise UsmError("the response's security level differs from the request's")
        return pdu

    def _localized(self, engine_id: bytes) -> tuple[bytes, bytes, bytes]:
        if self._keys is None or self._keys[2] != engine_id:
            auth_key = priv_key = b""
            if self.auth:
                auth_key = localized_key(self._auth_password, self.auth[0], engine_id)
                if self.priv:
                    priv_key = priv_key_for(self.priv, self._priv_password, self.auth[0], engine_id)
            self._keys = (auth_key, priv_key, engine_id)
        return self._keys

    def _encrypt(self, key: bytes, boots: int, engine_time: int, plain: bytes) -> tuple[bytes, bytes]:
        self._salt = (self._salt + 1) & 0xFFFFFFFFFFFFFFFF
        if self.priv == "DES":
            salt = boots.to_bytes(4, "big") + (self._salt & 0xFFFFFFFF).to_bytes(4, "big")
            iv = bytes(a ^ b for a, b in zip(key[8:16], salt, strict=True))
            padded = plain + bytes(-len(plain) % 8)
            encryptor = _cipher("DES", key[:8], iv).encryptor()
            return salt, encode_octets(encryptor.update(padded) + encryptor.finalize())
        salt = self._salt.to_bytes(8, "big")
        iv = boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + salt
        encryptor = _cipher("AES", key, iv).encryptor()
        return salt, encode_octets(encryptor.update(plain) + encryptor.finalize())

    def _decrypt(self, key: bytes, message: V3Message, data: bytes) -> bytes:
        salt = message.priv_params
        if len(salt) != 8:
            raise UsmError("privacy parameters are not 8 bytes")
        if self.priv == "DES":
            if len(data) % 8:
                raise UsmError("DES ciphertext is not a multiple of 8 bytes")
            iv = bytes(a ^ b for a, b in zip(key[8:16], salt, strict=True))
            decryptor = _cipher("DES", key[:8], iv).decryptor()
        else:
            iv = message.boots.to_bytes(4, "big") + message.time.to_bytes(4, "big") + salt
            decryptor = _cipher("AES", key, iv).decryptor()
        plain: bytes = decryptor.update(data) + decryptor.finalize()
        return plain


def decode_v3(raw: bytes) -> V3Message:
    """The header, security parameters and (possibly encrypted) data of a v3 message; BerError if malformed."""
    tag, pos, _ = read_header(raw, 0)
    if tag != SEQUENCE:
        raise BerError("not an SNMP message")
    version, pos = read_int(raw, pos)
    if version != 3:
        raise BerError(f"not SNMPv3 (version {version})")
    tag, pos, header_end = read_header(raw, pos)
    msg_id, pos = read_int(raw, pos)
    _, pos = read_int(raw, pos)
    flags_raw, pos = read_octets(raw, pos)
    model, pos = read_int(raw, pos)
    if tag != SEQUENCE or pos != header_end or len(flags_raw) != 1 or model != 3:
        raise BerError("not a USM message header")
    tag, pos, params_end = read_header(raw, pos)
    tag2, ppos, seq_end = read_header(raw, pos)
    if tag != OCTET_STRING or tag2 != SEQUENCE or seq_end != params_end:
        raise BerError("bad USM security parameters")
    engine_id, ppos = read_octets(raw, ppos)
    boots, ppos = read_int(raw, ppos)
    engine_time, ppos = read_int(raw, ppos)
    user, ppos = read_octets(raw, ppos)
    _, auth_offset, _ = read_header(raw, ppos)
    auth_params, ppos = read_octets(raw, ppos)
    priv_params, ppos = read_octets(raw, ppos)
    tag, start, end = read_header(raw, params_end)
    if tag == OCTET_STRING:
        return V3Message(msg_id, flags_raw[0], engine_id, boots, engine_time, user, auth_params, auth_offset,
                         priv_params, raw[start:end], True)
    if tag != SEQUENCE:
        raise BerError("bad scoped PDU")
    return V3Message(msg_id, flags_raw[0], engine_id, boots, engine_time, user, auth_params, auth_offset,
                     priv_params, raw[params_end:end], False)


def report_reason(pdu: Pdu) -> str:
    """Why a device sent a report PDU, as a closed set of reasons (usmStats and snmpUnknownContexts)."""
    for varbind in pdu.varbinds:
        reason = REPORT_REASONS.get(varbind.oid)
        if reason:
            return reason
    return "unknown_report"


@lru_cache(maxsize=256)
def master_key(password: bytes, hash_name: str) -> bytes:
    """RFC 3414 A.2: the hash of one MiB of the repeated password (cached: it costs milliseconds)."""
    stream = password * (1048576 // len(password) + 1)
    return hashlib.new(hash_name, stream[:1048576]).digest()


def localized_key(password: bytes, hash_name: str, engine_id: bytes) -> bytes:
    """The key localized to one engine: H(Ku || engineID || Ku)."""
    master = master_key(password, hash_name)
    return hashlib.new(hash_name, master + engine_id + master).digest()


def priv_key_for(protocol: str, password: bytes, hash_name: str, engine_id: bytes) -> bytes:
    """The privacy key, extended as the protocol's variant says when the auth hash is too short for it.

    Blumenthal (net-snmp AES-192/AES-256, gosnmp AES192/AES256): append H(key so far).
    Reeder (Cisco, gosnmp AES192C/AES256C): append the localized key of the key so far used as a password.
    """
    size, variant = PRIV_PROTOCOLS[protocol]
    key = localized_key(password, hash_name, engine_id)
    while len(key) < size:
        if variant == "reeder":
            key += localized_key(key, hash_name, engine_id)
        else:
            key += hashlib.new(hash_name, key).digest()
    return key if variant == "des" else key[:size]


def have_cryptography() -> bool:
    """Whether the `cryptography` package that AES and DES need is importable."""
    try:
        import cryptography.hazmat.primitives.ciphers  # noqa: F401
    except ImportError:
        return False
    return True


def _cipher(kind: str, key: bytes, iv: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    old_algorithms: Any
    old_modes: Any
    try:  # cryptography >= 43 keeps CFB and TripleDES in `decrepit`; the old names warn and will go
        from cryptography.hazmat.decrepit.ciphers import algorithms as old_algorithms
        from cryptography.hazmat.decrepit.ciphers import modes as old_modes
    except ImportError:
        old_algorithms, old_modes = algorithms, modes
    if kind == "AES":
        return Cipher(algorithms.AES(key), old_modes.CFB(iv))
    return Cipher(old_algorithms.TripleDES(key * 3), modes.CBC(iv))  # K1=K2=K3 is single DES


def _message(msg_id: int, flags: int, params: bytes, data: bytes) -> bytes:
    header = tlv(SEQUENCE, encode_int(msg_id) + encode_int(MAX_MESSAGE_SIZE) + encode_octets(bytes((flags,)))
                 + encode_int(3))
    return tlv(SEQUENCE, encode_int(3) + header + encode_octets(params) + data)


def _decode_scoped_pdu(data: bytes) -> Pdu:
    tag, pos, _ = read_header(data, 0)
    if tag != SEQUENCE:
        raise BerError("not a scoped PDU")
    _, pos = read_octets(data, pos)
    _, pos = read_octets(data, pos)
    return decode_pdu(data, pos)
