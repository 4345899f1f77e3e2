"""A capped line stream for the IMAP and POP3 clients, and the TCP connect shared with SMTP."""

from __future__ import annotations

import asyncio
import socket
import ssl

from agent.errors import Outcome
from collectors._mail_steps import StepFailed, reason

MAX_LINE = 1024 * 1024
"""Longest line read (an IMAP SEARCH answer for a mailbox full of leftovers is one long line)."""
MAX_READ = 8 * 1024 * 1024
"""Bytes one connection may read in all; a server that streams forever fails instead of filling memory."""


async def connect(address: str, port: int, source: str | None) -> socket.socket:
    """A connected non-blocking TCP socket (from `source` if given); StepFailed(CONNECTION_FAILED) when refused."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        if source:
            sock.bind((source, 0))
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except OSError as err:
        sock.close()
        raise StepFailed(Outcome.CONNECTION_FAILED, f"cannot connect to {address} port {port}: {reason(err)}") from None
    except BaseException:
        sock.close()
        raise
    return sock


class LineStream:
    """CRLF lines over a socket, with a per-line and per-connection read cap, and STARTTLS."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._read = 0

    @classmethod
    async def open(cls, sock: socket.socket) -> LineStream:
        """Wrap a connected socket."""
        reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_LINE)
        return cls(reader, writer)

    async def start_tls(self, context: ssl.SSLContext, server_name: str, seconds: float) -> ssl.SSLObject | None:
        """Upgrade to TLS (for implicit TLS right after connecting); the SSL object for the certificate metrics."""
        await self._writer.start_tls(context, server_hostname=server_name, ssl_handshake_timeout=max(seconds, 0.01))
        ssl_object: ssl.SSLObject | None = self._writer.get_extra_info("ssl_object")
        return ssl_object

    async def readline(self) -> bytes:
        """One line without its CRLF; StepFailed when it is too long, the cap is reached or the server closed."""
        try:
            raw = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise StepFailed(Outcome.PROTOCOL_ERROR, f"a line longer than {MAX_LINE} bytes") from None
        except asyncio.IncompleteReadError as err:
            closed = "the server closed the connection"
            raise StepFailed(Outcome.CONNECTION_FAILED, f"{closed} after {len(err.partial)} bytes of a line"
                             if err.partial else closed) from None
        self._count(len(raw))
        return raw.removesuffix(b"\n").removesuffix(b"\r")

    async def read_exactly(self, size: int) -> bytes:
        """Exactly `size` bytes (an IMAP literal)."""
        self._count(size)
        try:
            return await self._reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise StepFailed(Outcome.CONNECTION_FAILED, "the server closed the connection inside a literal") from None

    async def send(self, data: bytes) -> None:
        """Write bytes (a line with its CRLF) and wait until they are handed to the kernel."""
        self._writer.write(data)
        await self._writer.drain()

    def ssl_object(self) -> ssl.SSLObject | None:
        """The TLS session, or None on a plain connection."""
        ssl_object: ssl.SSLObject | None = self._writer.get_extra_info("ssl_object")
        return ssl_object

    def abort(self) -> None:
        """Drop the connection at once (no TLS close_notify exchange that a broken peer could stall)."""
        self._writer.transport.abort()

    def _count(self, size: int) -> None:
        self._read += size
        if self._read > MAX_READ:
            raise StepFailed(Outcome.PROTOCOL_ERROR, f"the server sent more than {MAX_READ} bytes")
