"""TLS test clients for the web-surface tests: a trustme PKI's files, client contexts, one-shot requests."""

from __future__ import annotations

import http.client
import ssl
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

import trustme

PASSWORDS = {"alice": "alice123", "carol": "carol123", "dave": "dave123"}
"""Users of the basic-auth tests (hashed at cost 10 per session, as in exporter-toolkit's testdata)."""

@dataclass
class Pki:
    """Files of one test PKI: the server's CA, cert and key; client certificates from the right and a rogue CA."""

    dir: Path
    ca: trustme.CA
    server_crt: Path
    server_key: Path
    ca_pem: Path
    client_ca_pem: Path
    rogue_ca_pem: Path
    clients: dict[str, tuple[Path, Path]]
    """name -> (cert chain, key): good (SAN DNS client1.test), other_san (DNS client2.test), rogue, expired."""


def client_context(pki: Pki, client: str | None = None, *, max_version: ssl.TLSVersion | None = None,
                   min_version: ssl.TLSVersion | None = None, ciphers: str | None = None,
                   curve: str | None = None) -> ssl.SSLContext:
    """A client trusting the test server CA, optionally with a client certificate and narrowed TLS settings."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_pem))
    if client is not None:
        crt, key = pki.clients[client]
        ctx.load_cert_chain(str(crt), str(key))
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if curve is not None:
        ctx.set_ecdh_curve(curve)
    return ctx


@dataclass
class Reply:
    """What one request got back."""

    status: int
    headers: dict[str, str]
    body: bytes
    cipher: str | None = None
    version: str | None = None


def request(address: str, path: str = "/metrics", *, ctx: ssl.SSLContext | None = None,
            auth: tuple[str, str] | tuple[bytes, bytes] | None = None, method: str = "GET",
            headers: dict[str, str] | None = None, body: bytes | None = None, timeout: float = 10.0) -> Reply:
    """One request on a fresh connection (HTTPS when `ctx` is given); TLS and socket errors propagate."""
    host, port = address.rsplit(":", 1)
    conn: http.client.HTTPConnection
    if ctx is not None:
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    sent = dict(headers or {})
    if auth is not None:
        user, password = (part if isinstance(part, bytes) else part.encode() for part in auth)
        sent["Authorization"] = "Basic " + b64encode(user + b":" + password).decode()
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        data = response.read()
        cipher = version = None
        if ctx is not None and conn.sock is not None:
            tls_sock: ssl.SSLSocket = conn.sock  # type: ignore[assignment]
            cipher_info = tls_sock.cipher()
            cipher, version = (cipher_info[0] if cipher_info else None), tls_sock.version()
        return Reply(response.status, dict(response.headers), data, cipher, version)
    finally:
        conn.close()
