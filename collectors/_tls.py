"""TLS client settings and blackbox_exporter's certificate metrics, shared by http, tcp and mail probes."""

from __future__ import annotations

import _ssl
import hashlib
import ssl
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from pydantic import model_validator

from collectors.base import MetricSpec, ProbeContext, Settings

TlsVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]

METRICS = (
    MetricSpec("probe_ssl_earliest_cert_expiry", "gauge", "Returns last SSL chain expiry in unixtime"),
    MetricSpec("probe_ssl_last_chain_expiry_timestamp_seconds", "gauge",
               "Returns last SSL chain expiry in timestamp"),
    MetricSpec("probe_ssl_last_chain_info", "gauge", "Contains SSL leaf certificate information",
               ("fingerprint_sha256", "subject", "issuer", "subjectalternative")),
    MetricSpec("probe_tls_version_info", "gauge", "Returns the TLS version used or NaN when unknown", ("version",)),
    MetricSpec("probe_tls_cipher_info", "gauge", "Returns the TLS cipher negotiated during handshake", ("cipher",)),
)

_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
GO_ZERO_TIME = -62135596800.0
_ENCODING_DER = getattr(_ssl, "ENCODING_DER", 1)
_VERSION_LABELS = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3"}


class TlsConfig(Settings):
    """blackbox_exporter's tls_config: CA, client certificate, server name, verification and versions."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False
    min_version: TlsVersion | None = None
    max_version: TlsVersion | None = None

    @model_validator(mode="after")
    def _usable(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.min_version and self.max_version and self.min_version > self.max_version:
            raise ValueError("min_version is newer than max_version")
        try:
            client_context(self)
        except (OSError, ssl.SSLError) as err:
            raise ValueError(f"cannot load TLS files: {err}") from None
        return self


@lru_cache(maxsize=128)
def client_context(config: TlsConfig | None) -> ssl.SSLContext:
    """An SSL client context for these settings, built once (loading CAs costs milliseconds)."""
    context = ssl.create_default_context(cafile=config.ca_file if config else None)
    if config is None:
        return context
    if config.cert_file and config.key_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    if config.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.min_version:
        context.minimum_version = _VERSIONS[config.min_version]
    if config.max_version:
        context.maximum_version = _VERSIONS[config.max_version]
    return context


def record(ctx: ProbeContext, ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> None:
    """Record the certificate and TLS metrics of an established connection, as blackbox_exporter does."""
    if ssl_object is None:
        return
    version = ssl_object.version() or ""
    ctx.sink.add("probe_tls_version_info", 1, _VERSION_LABELS.get(version, version))
    cipher = ssl_object.cipher()
    if cipher:
        ctx.sink.add("probe_tls_cipher_info", 1, cipher[0])
    sent = _chain(ssl_object, verified=False)
    if sent:
        ctx.sink.add("probe_ssl_earliest_cert_expiry", min(cert.not_after for cert in sent))
        leaf = sent[0]
        ctx.sink.add("probe_ssl_last_chain_info", 1, leaf.fingerprint, leaf.subject, leaf.issuer, leaf.dns_names)
    if ssl_object.context.verify_mode == ssl.CERT_NONE:
        # Nothing was verified: blackbox_exporter then reports Go's zero time, and dashboards expect that value.
        ctx.sink.add("probe_ssl_last_chain_expiry_timestamp_seconds", GO_ZERO_TIME)
        return
    verified = _chain(ssl_object, verified=True)
    if verified:
        ctx.sink.add("probe_ssl_last_chain_expiry_timestamp_seconds", min(cert.not_after for cert in verified))


def record_rejected(ctx: ProbeContext, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> None:
    """After a failed handshake, the earliest expiry of the certificates the server sent (an expired one shows)."""
    sent = _chain(ssl_object, verified=False)
    if sent:
        ctx.sink.add("probe_ssl_earliest_cert_expiry", min(cert.not_after for cert in sent))


class _Certificate(NamedTuple):
    not_after: float
    fingerprint: str
    subject: str
    issuer: str
    dns_names: str


def _chain(ssl_object: ssl.SSLObject | ssl.SSLSocket, verified: bool) -> list[_Certificate]:
    # Python 3.13 makes these public (SSLSocket.get_verified_chain); 3.10-3.12 have them on the _ssl object.
    inner = getattr(ssl_object, "_sslobj", ssl_object)
    getter = getattr(inner, "get_verified_chain" if verified else "get_unverified_chain", None)
    if getter is None:
        return []
    try:
        certificates = getter() or []
    except (ssl.SSLError, ValueError):
        return []
    return [_parse(c.public_bytes(_ENCODING_DER), c) for c in certificates]


def _parse(der: bytes, certificate: Any) -> _Certificate:
    cached = _PARSED.get(der)
    if cached is None:
        # Parsing and date conversion cost ~0.15 ms per probe; a site's certificates change a few times a year.
        info = certificate.get_info()
        cached = _Certificate(
            float(ssl.cert_time_to_seconds(info["notAfter"])),
            hashlib.sha256(der).hexdigest(),
            _name(info.get("subject", ())),
            _name(info.get("issuer", ())),
            ",".join(value for kind, value in info.get("subjectAltName", ()) if kind == "DNS"),
        )
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[der] = cached
    return cached


_PARSED: dict[bytes, _Certificate] = {}
_PARSED_MAX = 1024


def _name(rdns: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    # The order and spelling of Go's pkix.Name.String(): "CN=example.com,O=Example".
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
             "localityName": "L", "stateOrProvinceName": "ST"}
    parts = [f"{short.get(key, key)}={value}" for rdn in reversed(rdns) for key, value in rdn]
    return ",".join(parts)
