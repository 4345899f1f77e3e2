"""DNS servers for probe tests: Debian's dnsmasq on loopback, and a dnspython responder for faults dnsmasq won't make.

dnsmasq answers from its own records only (--no-resolv, no server= lines): it never forwards anywhere. It is
authoritative for testbed.invalid and 127.in-addr.arpa (aa flag, SOA serial, NS in the authority section).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rrset
from testlib import free_port, wait_for

ZONE = "testbed.invalid"
SOA_SERIAL = 2026112701
DNSMASQ_RECORDS = (
    "--local=/testbed.invalid/",
    "--host-record=web.testbed.invalid,127.0.0.11",
    "--host-record=db.testbed.invalid,127.0.0.12,::1",
    "--cname=www.testbed.invalid,web.testbed.invalid",
    "--mx-host=testbed.invalid,mail.testbed.invalid,10",
    "--txt-record=testbed.invalid,v=spf1 -all",
    "--txt-record=multi.testbed.invalid,first",
    "--txt-record=multi.testbed.invalid,second",
    "--srv-host=_imap._tcp.testbed.invalid,mail.testbed.invalid,10143",
    "--ptr-record=11.0.0.127.in-addr.arpa,web.testbed.invalid",
    "--auth-server=ns1.testbed.invalid,127.0.0.1",
    "--auth-zone=testbed.invalid,127.0.0.0/8,::1/128",
    f"--auth-soa={SOA_SERIAL},hostmaster.testbed.invalid",
)


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1:`port` (UDP and TCP), state in `directory`, stopped by its PID."""

    def __init__(self, directory: Path, records: Sequence[str] = DNSMASQ_RECORDS) -> None:
        self.port = free_port()
        self.log = directory / "dnsmasq.log"
        self.argv = [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
            "--pid-file=", "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={self.port}",
            f"--log-facility={self.log}", "--log-queries", "--local-ttl=60", *records,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        """127.0.0.1:port, as a dns target."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Dnsmasq:
        """Start it and wait (bounded) until it answers."""
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"dnsmasq exited: {self.process.stderr.read()!r}")  # type: ignore[union-attr]
            query = dns.message.make_query(f"web.{ZONE}", "A")
            return dns.query.udp(query, "127.0.0.1", timeout=0.3, port=self.port).rcode() == dns.rcode.NOERROR

        wait_for(answers, timeout=15)
        return self

    def stop(self) -> None:
        """SIGTERM by PID and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


Handler = Callable[[dns.message.Message, bytes], bytes | None]
"""Gets the parsed query and its wire bytes; returns the reply's wire bytes, or None to stay silent."""


class Responder:
    """`async with Responder(handler) as server:` answers DNS over UDP and TCP on the same port of `host`."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.host = host
        self.tls = tls
        self.port = 0
        self.queries: list[dns.message.Message] = []
        self.sources: list[str] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def __aenter__(self) -> Responder:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._tcp = await asyncio.start_server(self._stream, self.host, 0, family=family, ssl=self.tls)
        self.port = self._tcp.sockets[0].getsockname()[1]
        if self.tls is None:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self.port), family=family)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._udp is not None:
            self._udp.close()
        assert self._tcp is not None
        self._tcp.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self._tcp.wait_closed()

    @property
    def target(self) -> str:
        """host:port as a dns target."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def answer(self, wire: bytes, source: str) -> bytes | None:
        """The handler's reply to one query (the query is kept in `queries`, its source address in `sources`)."""
        query = dns.message.from_wire(wire)
        self.queries.append(query)
        self.sources.append(source)
        return self.handler(query, wire)

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            reply = self.answer(await reader.readexactly(size), writer.get_extra_info("peername")[0])
            if reply is not None:
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
                await reader.read(1)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.responder.answer(data, addr[0])
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


def reply(query: dns.message.Message, rcode: int = dns.rcode.NOERROR, answer: Sequence[str] = (),
          authority: Sequence[str] = (), additional: Sequence[str] = (), flags: int = 0) -> dns.message.Message:
    """A response to `query` with records given as text ("name ttl IN type data")."""
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    response.flags |= flags
    for section, records in ((response.answer, answer), (response.authority, authority),
                             (response.additional, additional)):
        for record in records:
            name, ttl, rdclass, rdtype, *data = record.split()
            section.append(dns.rrset.from_text(name, int(ttl), rdclass, rdtype, " ".join(data)))
    return response


def servfail(query: dns.message.Message, wire: bytes) -> bytes:
    """SERVFAIL, no records."""
    return reply(query, dns.rcode.SERVFAIL).to_wire()


def silent(query: dns.message.Message, wire: bytes) -> None:
    """Never answers."""
    return None


def garbage(query: dns.message.Message, wire: bytes) -> bytes:
    """The query's ID, then bytes that are no DNS message."""
    return wire[:2] + b"\x81\x80\x00\x01\x00\x05\x00\x00\x00\x00\x07garbage"


def wrong_id(query: dns.message.Message, wire: bytes) -> bytes:
    """A well-formed answer with another message ID."""
    response = reply(query, answer=[f"{query.question[0].name} 60 IN A 127.0.0.5"])
    response.id = (query.id + 1) % 65536
    return response.to_wire()


def truncated(query: dns.message.Message, wire: bytes) -> bytes:
    """TC set and no records, as a server does when the answer does not fit in UDP."""
    return reply(query, flags=dns.flags.TC).to_wire()


def answer_a(address: str = "127.0.0.5", ttl: int = 300) -> Handler:
    """Answers every query with one A record."""
    def handler(query: dns.message.Message, wire: bytes) -> bytes:
        return reply(query, answer=[f"{query.question[0].name} {ttl} IN A {address}"]).to_wire()
    return handler
