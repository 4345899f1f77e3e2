"""The aiohttp side of the http probe: a new connection per request, blackbox's phase timestamps, capped bodies.

Imported only when an http check runs (aiohttp's client is not loaded by an idle agent that has none).
"""

from __future__ import annotations

import contextvars
import os
import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from functools import cache
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from agent.errors import Outcome, ProbeError
from collectors import _resolve, _tls

if TYPE_CHECKING:
    from aiohttp.abc import ResolveResult
    from multidict import CIMultiDictProxy

__all__ = ["URL", "Body", "Client", "Exchange", "HttpFailure", "RoundTrip"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_SKIP_AUTO_HEADERS = frozenset({"Accept-Encoding", "Content-Type"})  # Go's client sends neither unless asked


class HttpFailure(ProbeError):
    """A request that ended without a usable response; carries the outcome it stands for."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(slots=True)
class RoundTrip:
    """One request on its own connection: time.perf_counter() stamps like blackbox's httptrace hooks (0 = not yet)."""

    url: URL
    started: float
    resolve: float = 0.0
    connect_start: float = 0.0
    tls_start: float = 0.0
    connected: float = 0.0
    response_start: float = 0.0
    end: float = 0.0
    ssl_object: ssl.SSLObject | None = None
    resolve_failed: bool = False

    @property
    def stage(self) -> str:
        """What this round trip was doing last, for timeout messages."""
        if self.end or self.response_start:
            return "reading the body"
        if self.connected:
            return "waiting for the response"
        if self.tls_start:
            return "in the TLS handshake"
        return "connecting" if self.connect_start else "resolving"

    def add_phases(self, phases: dict[str, float]) -> None:
        """Add this round trip's share to blackbox's phases (resolve is the caller's for the first one)."""
        phases["resolve"] += self.resolve
        if not self.connected:
            return
        phases["connect"] += max(0.0, (self.tls_start or self.connected) - self.connect_start - self.resolve)
        if self.tls_start:
            phases["tls"] += self.connected - self.tls_start
        if not self.response_start:
            return
        phases["processing"] += self.response_start - self.connected
        if self.end:
            phases["transfer"] += self.end - self.response_start


@dataclass(slots=True)
class Body:
    """A response body as read: decoded length, the bytes if asked for, and whether it broke the size limit."""

    length: int
    data: bytes | None
    too_large: bool


class Client:
    """One probe's HTTP client: a connection per request (none reused), one cookie jar, the target pre-resolved."""

    def __init__(self, host: str, address: str, preferred: _resolve.IpProtocol, fallback: bool) -> None:
        self.trips: list[RoundTrip] = []
        connector = aiohttp.TCPConnector(
            force_close=True, use_dns_cache=False, limit=0, resolver=_Resolver(host, address, preferred, fallback)
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # unsafe: also keep cookies of targets given by IP address
            auto_decompress=False,
            trace_configs=[_trace_config()],
            skip_auto_headers=_SKIP_AUTO_HEADERS,
        )

    async def close(self) -> None:
        """Close the session (its connections are already closed: one per request)."""
        await self._session.close()

    async def send(
        self,
        method: str,
        url: URL,
        headers: dict[str, str],
        body: bytes | None,
        tls: _tls.TlsConfig | None,
        server_hostname: str | None,
        proxy: str | None,
        seconds_left: float,
    ) -> Exchange:
        """Send one request on a new connection and return once the response headers are in."""
        trip = RoundTrip(url, time.perf_counter())
        self.trips.append(trip)
        token = _CURRENT.set(trip)
        try:
            response = await self._session.request(
                method, url, headers=headers, data=body, allow_redirects=False, proxy=proxy,
                ssl=_timed_context(tls), server_hostname=server_hostname,
                timeout=aiohttp.ClientTimeout(total=seconds_left),
            )
        except aiohttp.ClientError as err:
            raise _failure(err, trip) from None
        except ssl.SSLError as err:
            raise HttpFailure(Outcome.TLS_FAILED, f"TLS error with {url.host}: {err.reason or err}") from None
        finally:
            _CURRENT.reset(token)
        trip.response_start = time.perf_counter()
        return Exchange(trip, response)


class Exchange:
    """A response whose headers are in; read() or close() it."""

    def __init__(self, trip: RoundTrip, response: aiohttp.ClientResponse) -> None:
        self.trip = trip
        self._response = response
        self.status: int = response.status
        self.reason: str = response.reason or ""
        self.headers: CIMultiDictProxy[str] = response.headers
        version = response.version
        self.version = f"HTTP/{version.major}.{version.minor}" if version is not None else "HTTP/1.1"
        self.content_length = response.content_length if response.content_length is not None else -1
        self.charset = response.charset

    @property
    def location(self) -> str | None:
        """The Location of a redirect response, else None (Go follows only those)."""
        return self.headers.get("Location") if self.status in REDIRECT_STATUSES else None

    async def read(self, limit: int, compression: str, keep: bool) -> Body:
        """Read the body, decoded per `compression`; stop past `limit` bytes (on the wire or decoded)."""
        decoder = _Decoder(compression)
        chunks: list[bytes] = []
        raw = length = 0
        too_large = False
        try:
            while data := await self._response.content.readany():
                raw += len(data)
                decoded = decoder.feed(data, limit - length)
                length += len(decoded)
                if length > limit or raw > limit:
                    if keep:  # the part of this chunk that fits: a crawler parses a page up to the cap
                        chunks.append(decoded[:max(0, limit - (length - len(decoded)))])
                    too_large, length = True, min(length, limit)
                    break
                if keep:
                    chunks.append(decoded)
            if not too_large:
                decoder.finish()
        except aiohttp.ClientError as err:
            raise _failure(err, self.trip) from None
        except (ssl.SSLError, zlib.error) as err:
            raise HttpFailure(Outcome.PROTOCOL_ERROR, f"cannot read the body: {err}") from None
        finally:
            self.trip.end = time.perf_counter()
            self.close()
        return Body(length, b"".join(chunks) if keep else None, too_large)

    def close(self) -> None:
        """Drop the response and its connection."""
        self._response.close()


_DNS_ERROR: Any = getattr(aiohttp, "ClientConnectorDNSError", ())  # aiohttp >= 3.10; before, resolve_failed tells
_CURRENT: contextvars.ContextVar[RoundTrip | None] = contextvars.ContextVar("egov_http_round_trip", default=None)


class _Resolver(AbstractResolver):
    """The target's host maps to the address the probe resolved; other hosts (redirects, steps) resolve here."""

    def __init__(self, host: str, address: str, preferred: _resolve.IpProtocol, fallback: bool) -> None:
        self._host = host.lower()
        self._address = address
        self._preferred = preferred
        self._fallback = fallback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """One address, chosen with the module's IP-family rules: one connection attempt, like blackbox."""
        address: str | None = self._address
        if host.lower() != self._host:
            trip = _CURRENT.get()
            started = time.perf_counter()
            address = await _resolve.lookup(host, self._preferred, self._fallback)
            if trip is not None:
                trip.resolve += time.perf_counter() - started
                trip.resolve_failed = address is None
            if address is None:
                raise OSError(f"cannot resolve {host}")
        assert address is not None
        result: ResolveResult = {
            "hostname": host, "host": address, "port": port,
            "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
            "proto": 0, "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
        }
        return [result]

    async def close(self) -> None:
        """Nothing to release."""


class _TimedSSLObject(ssl.SSLObject):
    """Notes when the TLS handshake of the current round trip starts, and keeps its SSL object (also on failure)."""

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> Any:
        created = super()._create(*args, **kwargs)  # type: ignore[misc]
        trip = _CURRENT.get()
        if trip is not None:
            trip.tls_start = time.perf_counter()
            trip.ssl_object = created
        return created


def _timed_context(config: _tls.TlsConfig | None) -> ssl.SSLContext:
    # asyncio's SSL transport calls context.wrap_bio() once the TCP connection is up; the class it builds is
    # our hook into that moment. Other users of the shared context are unaffected (no round trip is current).
    context = _tls.client_context(config)
    if context.sslobject_class is not _TimedSSLObject:
        context.sslobject_class = _TimedSSLObject
    return context


async def _on_connection_create_start(_: aiohttp.ClientSession, __: SimpleNamespace, ___: Any) -> None:
    trip = _CURRENT.get()
    if trip is not None:
        trip.connect_start = time.perf_counter()


async def _on_connection_create_end(_: aiohttp.ClientSession, __: SimpleNamespace, ___: Any) -> None:
    trip = _CURRENT.get()
    if trip is not None:
        trip.connected = time.perf_counter()


@cache
def _trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_connection_create_start.append(_on_connection_create_start)
    config.on_connection_create_end.append(_on_connection_create_end)
    config.freeze()
    return config


class _Decoder:
    """Decodes gzip or deflate with the output of each call capped, so a compression bomb costs no memory."""

    def __init__(self, compression: str) -> None:
        self._compression = compression if compression in ("gzip", "deflate") else ""
        self._inflater: Any = None
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes:
        """Decoded bytes of `data`: at most room + 1 of them (one more than fits tells the caller it overflowed)."""
        if not self._compression:
            return data
        if self._inflater is None:
            self._inflater = self._new(data)
        out = bytearray()
        while data:
            out += self._inflater.decompress(data, max(1, room - len(out) + 1))
            if len(out) > room:
                break
            if self._inflater.eof:  # a gzip stream may hold several members
                data = self._inflater.unused_data
                if data:
                    self._inflater = self._new(data)
            else:
                data = self._inflater.unconsumed_tail
        return bytes(out)

    def finish(self) -> None:
        """Raise zlib.error if the compressed body was empty or cut short."""
        if self._compression and (self._inflater is None or not self._inflater.eof):
            raise zlib.error(f"the {self._compression} body is empty or truncated")

    def _new(self, head: bytes) -> Any:
        if self._compression == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" is zlib-wrapped by the RFC, raw in many servers (and in Go's reader): accept both.
        wrapped = len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)


def _failure(err: aiohttp.ClientError, trip: RoundTrip) -> HttpFailure:
    where = f"{trip.url.host}:{trip.url.port}"
    if trip.resolve_failed or isinstance(err, _DNS_ERROR):
        return HttpFailure(Outcome.RESOLVE_FAILED, f"cannot resolve {trip.url.host}")
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        cert_error = err.certificate_error
        detail = getattr(cert_error, "verify_message", "") or getattr(cert_error, "reason", "") or str(cert_error)
        return HttpFailure(Outcome.TLS_FAILED,
                           f"TLS handshake with {where} failed: certificate verify failed: {detail}")
    if isinstance(err, aiohttp.ClientSSLError):
        os_error = err.os_error
        detail = getattr(os_error, "reason", None) or getattr(os_error, "strerror", None) or str(os_error)
        return HttpFailure(Outcome.TLS_FAILED, f"TLS handshake with {where} failed: {detail}")
    if isinstance(err, aiohttp.ClientProxyConnectionError):
        return HttpFailure(Outcome.CONNECTION_FAILED, f"cannot connect to the proxy: {_reason(err.os_error)}")
    if isinstance(err, aiohttp.ClientHttpProxyError):
        return HttpFailure(Outcome.CONNECTION_FAILED, f"the proxy refused to connect to {where}: {err.status}")
    if isinstance(err, aiohttp.ClientConnectorError):
        return HttpFailure(Outcome.CONNECTION_FAILED, f"cannot connect to {where}: {_reason(err.os_error)}")
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return HttpFailure(Outcome.PROTOCOL_ERROR, f"{where} closed the connection without a complete response")
    if isinstance(err, aiohttp.ClientPayloadError):
        return HttpFailure(Outcome.PROTOCOL_ERROR, f"the body from {where} is cut short or malformed")
    if isinstance(err, aiohttp.ClientResponseError):
        return HttpFailure(Outcome.PROTOCOL_ERROR, f"{where} did not answer in HTTP: {err.message}")
    return HttpFailure(Outcome.PROTOCOL_ERROR, f"request to {where} failed: {err}")


def _reason(err: OSError) -> str:
    return os.strerror(err.errno) if err.errno else (err.strerror or str(err))
