"""Fixtures for the central-configuration tests: keys, signed configs, bootstrap files and a scripted HTTPS server."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.signing import sign_config

OFFICE = "000.00.20.H49"
OTHER_OFFICE = "000.00.21.H49"


def office_config(check: str = "host-v1", org_id: str = OFFICE, extra: str = "") -> bytes:
    """A central config for the commune office: one host check named `check`, every second."""
    return f"""\
# config published by the province
office: {{org_id: {org_id}, name: "UBND xã Tam Xuân 1", level: commune, parent_id: 000.00.15.H49}}
modules:
  host_fast: {{kind: host, timeout: 900ms}}
checks:
  - {{name: {check}, module: host_fast, service: host, targets: [localhost], interval: 1s}}
{extra}""".encode()


@dataclass
class Keys:
    """The province's signing key, its public key file, and a second key nobody trusts."""

    private: Ed25519PrivateKey
    public_file: Path
    stranger: Ed25519PrivateKey

    def sign(self, body: bytes, version: int, org_id: str = OFFICE, not_before: float | None = None,
             not_after: float | None = None, key: Ed25519PrivateKey | None = None) -> bytes:
        """A signed file, valid from an hour ago for a day unless told otherwise."""
        now = time.time()
        start = int(now - 3600 if not_before is None else not_before)
        end = int(now + 86400 if not_after is None else not_after)
        return sign_config(body, key or self.private, org_id, version, start, end)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    """A fresh key pair; the public key written as PEM."""
    private = Ed25519PrivateKey.generate()
    public_file = tmp_path / "province.pub"
    public_file.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    return Keys(private, public_file, Ed25519PrivateKey.generate())


def bootstrap(url: str, keys: Keys, ca_file: Path, state_dir: Path, extra_source: str = "",
              check: str = "host-local") -> str:
    """The office's local bootstrap file: office, config_source (1 s polls), state dir and one local check."""
    return f"""\
office: {{org_id: {OFFICE}, name: "UBND xã Tam Xuân 1", level: commune, parent_id: 000.00.15.H49}}
agent: {{state_dir: "{state_dir}"}}
config_source:
  url: {url}
  public_key: {keys.public_file}
  interval: 1s
  jitter: 100ms
  timeout: 900ms
  max_bytes: 4KiB
  tls: {{ca_file: "{ca_file}"}}
{extra_source}
modules:
  host_fast: {{kind: host, timeout: 900ms}}
checks:
  - {{name: {check}, module: host_fast, service: host, targets: [localhost], interval: 1s}}
"""


@dataclass
class ScriptedHttps:
    """A TLS server on 127.0.0.1 answering every request as `mode` says: serve, truncate, hang or flood."""

    ca: trustme.CA
    body: bytes = b""
    mode: str = "serve"
    port: int = 0
    requests: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _sock: socket.socket | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen and answer in a thread until stop()."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1").configure_cert(context)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        thread = threading.Thread(target=self._serve, args=(context,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop accepting and answering; joins the threads (bounded)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def _serve(self, context: ssl.SSLContext) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            thread = threading.Thread(target=self._answer, args=(context, conn), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _answer(self, context: ssl.SSLContext, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                data = b""
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                self.requests += 1
                mode, body = self.mode, self.body
                if mode == "hang":
                    self._stop.wait(10)  # answer nothing until the test ends (bounded)
                elif mode == "truncate":
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                                + body[: len(body) // 2])
                elif mode == "flood":  # no Content-Length: the size is known only while reading
                    tls.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                    for _ in range(64):
                        tls.sendall(b"#" * 1023 + b"\n")
                else:
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                                + body)
        except OSError:
            pass


@pytest.fixture
def scripted_https() -> Iterator[Callable[[trustme.CA], ScriptedHttps]]:
    """Factory for ScriptedHttps servers, stopped at teardown."""
    started: list[ScriptedHttps] = []

    def start(ca: trustme.CA) -> ScriptedHttps:
        server = ScriptedHttps(ca)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Central:
    """The helpers above, for tests (a conftest is not importable by name)."""

    office = OFFICE
    other_office = OTHER_OFFICE
    office_config = staticmethod(office_config)
    bootstrap = staticmethod(bootstrap)


@pytest.fixture
def central() -> type[Central]:
    """Helpers: office ids, central config bodies and bootstrap files."""
    return Central
