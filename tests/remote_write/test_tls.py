"""The sender over HTTPS against the scripted receiver with trustme certificates: CA, client certificates, SNI.

A TLS failure is a network error: retried with backoff, the data kept in the queue and counted; nothing is
dead-lettered.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from fakes.rw_harness import Harness, until
from fakes.rw_receiver import FakeReceiver


@dataclass
class Pki:
    """A trusted CA (`ca_file`), a foreign one, and client certificates from each, written to files."""

    ca: trustme.CA
    ca_file: Path
    foreign_ca_file: Path
    client: tuple[Path, Path]
    foreign_client: tuple[Path, Path]

    def server(self, *identities: str, require_client: bool = False) -> ssl.SSLContext:
        """A server context for `identities` (default 127.0.0.1), asking for a client certificate if told."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*(identities or ("127.0.0.1",))).configure_cert(context)
        if require_client:
            self.ca.configure_trust(context)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, foreign = trustme.CA(), trustme.CA()
    files = []
    for name, authority in (("ca", ca), ("foreign-ca", foreign)):
        path = tmp_path / f"{name}.pem"
        authority.cert_pem.write_to_path(str(path))
        files.append(path)
    clients = []
    for name, authority in (("client", ca), ("foreign-client", foreign)):
        leaf = authority.issue_cert("office-000.00.20.H49")
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        clients.append((cert, key))
    return Pki(ca, files[0], files[1], clients[0], clients[1])


async def test_verified_with_ca_file(make, pki) -> None:
    receiver = await FakeReceiver(tls=pki.server()).start()
    try:
        assert receiver.url.startswith("https://127.0.0.1:")
        h = await make(receiver, tls_config={"ca_file": str(pki.ca_file)})
        h.feed(2)
        await h.wait_accepted(6)
        assert h.sender.stats.sent == 6 and h.sender.stats.requests == {"204": 1}
        assert not h.sender.stats.retries
    finally:
        await receiver.stop()


@pytest.mark.parametrize("trust", ["system", "foreign"])
async def test_unknown_ca_is_a_retried_network_error_and_the_data_is_kept(make, pki, tmp_path, trust, caplog) -> None:
    receiver = await FakeReceiver(tls=pki.server()).start()
    try:
        tls = {} if trust == "system" else {"tls_config": {"ca_file": str(pki.foreign_ca_file)}}
        h = await make(receiver, **tls)
        h.feed(2)
        await until(lambda: h.sender.stats.retries.get("network", 0) >= 3)
        assert not receiver.requests  # the handshake failed: no request reached the receiver
        assert h.queue.stats.samples == 6 and not h.sender.stats.failed and h.sender.stats.sent == 0
        assert h.sender.stats.requests == {"network": h.sender.stats.retries["network"]}
        assert any("CERTIFICATE_VERIFY_FAILED" in str(getattr(r, "kv", {}).get("err")) for r in caplog.records)
        await h.stop()
        # The same queue, now trusting the right CA, delivers what was kept.
        fixed = Harness(tmp_path / "0", receiver, tls_config={"ca_file": str(pki.ca_file)})
        await fixed.start()
        try:
            await fixed.wait_accepted(6)
        finally:
            await fixed.stop()
        assert fixed.sender.stats.sent == 6
    finally:
        await receiver.stop()


async def test_client_certificate_required_by_the_receiver(make, pki) -> None:
    receiver = await FakeReceiver(tls=pki.server(require_client=True)).start()
    try:
        cert, key = pki.client
        h = await make(receiver, tls_config={"ca_file": str(pki.ca_file), "cert_file": str(cert),
                                             "key_file": str(key)})
        h.feed()
        await h.wait_accepted(3)
        assert h.sender.stats.requests == {"204": 1}
    finally:
        await receiver.stop()


@pytest.mark.parametrize("client", ["none", "foreign"])
async def test_missing_or_untrusted_client_certificate_is_retried_and_kept(make, pki, client) -> None:
    receiver = await FakeReceiver(tls=pki.server(require_client=True)).start()
    try:
        tls: dict[str, str] = {"ca_file": str(pki.ca_file)}
        if client == "foreign":
            tls.update(cert_file=str(pki.foreign_client[0]), key_file=str(pki.foreign_client[1]))
        h = await make(receiver, tls_config=tls)
        h.feed()
        await until(lambda: h.sender.stats.retries.get("network", 0) >= 3)
        assert not receiver.accepted and not h.sender.stats.failed
        assert h.queue.stats.samples == 3
    finally:
        await receiver.stop()


async def test_server_name_checks_the_certificate_against_another_name(make, pki) -> None:
    receiver = await FakeReceiver(tls=pki.server("metrics.quangnam.test")).start()
    try:
        h = await make(receiver, tls_config={"ca_file": str(pki.ca_file), "server_name": "metrics.quangnam.test"})
        h.feed()
        await h.wait_accepted(3)
        wrong = await make(receiver, tls_config={"ca_file": str(pki.ca_file), "server_name": "other.test"})
        wrong.feed()
        await until(lambda: wrong.sender.stats.retries.get("network", 0) >= 2)
        assert wrong.queue.stats.samples == 3
    finally:
        await receiver.stop()
