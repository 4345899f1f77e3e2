"""Loopback TCP servers for probe tests: scripted dialogues (SMTP, IMAP, POP3, SSH), STARTTLS, misbehaving peers.

A script is a list of steps every accepted connection plays in order:
  ("send", b"...")        write bytes
  ("expect", b"prefix")   read one line; it must start with prefix (else the connection is closed)
  ("starttls",)           upgrade to TLS with the server's certificate
  ("wait",)               read until the peer closes (a silent server when it comes first)
  ("close",)              close the connection (FIN)
  ("reset",)              abort the connection with a TCP RST
  ("endless_line",)       send bytes without a newline until the peer goes away
  ("endless_lines",)      send short lines that never match anything until the peer goes away
Lines the server read are kept in `received` (without CRLF), and each peer address in `peers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

Step = tuple[Any, ...]


@dataclass
class Certs:
    """A trustme CA (written to `ca_file`) and a server certificate for localhost, 127.0.0.1 and ::1."""

    ca: trustme.CA
    leaf: trustme.LeafCert
    ca_file: Path
    not_after: dt.datetime

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context presenting the leaf certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.leaf.configure_cert(context)
        return context


def make_certs(directory: Path, not_after: dt.datetime | None = None,
               identities: Sequence[str] = ("localhost", "127.0.0.1", "::1")) -> Certs:
    """A fresh CA and server certificate; `not_after` in the past gives an expired one."""
    ca = trustme.CA()
    not_after = not_after or (dt.datetime.now(dt.UTC) + dt.timedelta(days=90)).replace(microsecond=0)
    not_before = min(not_after - dt.timedelta(days=30), dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    leaf = ca.issue_cert(*identities, not_before=not_before, not_after=not_after)
    ca_file = directory / f"ca-{id(ca)}.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Certs(ca, leaf, ca_file, not_after)


class ScriptedServer:
    """`async with ScriptedServer(script) as server:` listens on 127.0.0.1 (or `host`) at `server.port`."""

    def __init__(self, script: Sequence[Step], host: str = "127.0.0.1", tls: ssl.SSLContext | None = None,
                 starttls: ssl.SSLContext | None = None) -> None:
        self.script = list(script)
        self.host = host
        self.tls = tls
        self.starttls = starttls
        self.received: list[bytes] = []
        self.peers: list[str] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._handle, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Let each handler see its peer go away (so `received` is complete), then abort what is left.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1)
        for reader, writer in self._streams:
            writer.transport.abort()
            reader.feed_eof()  # an aborted TLS transport does not always tell its protocol (Python 3.11)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1)
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self._server.wait_closed()

    @property
    def target(self) -> str:
        """host:port of the server, as a tcp target."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self._streams.append((reader, writer))
        self.connections += 1
        self.peers.append(str(writer.get_extra_info("peername")[0]))
        try:
            await self._play(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.transport.abort()
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def _play(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for step in self.script:
            match step:
                case ("send", bytes() as data):
                    writer.write(data)
                    await writer.drain()
                case ("expect", bytes() as prefix):
                    line = await reader.readline()
                    self.received.append(line.rstrip(b"\r\n"))
                    if not line.startswith(prefix):
                        return
                case ("starttls",):
                    assert self.starttls is not None, "a starttls step needs ScriptedServer(starttls=...)"
                    await writer.start_tls(self.starttls)
                case ("wait",):
                    while await reader.read(65536):
                        pass
                case ("close",):
                    writer.close()
                    return
                case ("reset",):
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                case ("endless_line",):
                    chunk = b"x" * 65536
                    while True:
                        writer.write(chunk)
                        await writer.drain()
                case ("endless_lines",):
                    chunk = b"* still nothing to see here\r\n" * 2000
                    while True:
                        writer.write(chunk)
                        await writer.drain()
                case _:
                    raise ValueError(f"unknown script step {step!r}")
        while await reader.read(65536):
            pass


def smtp_script(banner: bytes = b"220 mail.testbed.invalid ESMTP Postfix (Debian/GNU)\r\n") -> list[Step]:
    """An ESMTP server offering STARTTLS, then AUTH once TLS is up (what smtp_starttls expects)."""
    return [
        ("send", banner),
        ("expect", b"EHLO"),
        ("send", b"250-mail.testbed.invalid\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n"),
        ("expect", b"STARTTLS"),
        ("send", b"220 2.0.0 Ready to start TLS\r\n"),
        ("starttls",),
        ("expect", b"EHLO"),
        ("send", b"250-mail.testbed.invalid\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"),
        ("expect", b"QUIT"),
        ("send", b"221 2.0.0 Bye\r\n"),
        ("close",),
    ]


def imap_script() -> list[Step]:
    """A Dovecot-like IMAP greeting with STARTTLS, then CAPABILITY over TLS (what imap_starttls expects)."""
    return [
        ("send", b"* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ STARTTLS LOGINDISABLED] Dovecot ready.\r\n"),
        ("expect", b". STARTTLS"),
        ("send", b". OK Begin TLS negotiation now.\r\n"),
        ("starttls",),
        ("expect", b". capability"),
        ("send", b"* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN\r\n. OK Pre-login capabilities listed.\r\n"),
        ("wait",),
    ]


SSH_SCRIPT: list[Step] = [("send", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"), ("expect", b"SSH-2.0-"), ("wait",)]
POP3_SCRIPT: list[Step] = [("send", b"+OK Dovecot (Debian) ready.\r\n"), ("wait",)]
