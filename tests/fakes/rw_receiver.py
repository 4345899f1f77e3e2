"""A scripted remote-write receiver on 127.0.0.1 (aiohttp, same event loop as the test).

Each request is recorded (headers, raw body, decoded series) and answered by the next step of the script; when the
script is used up, by `default`. A step is a Reply: status, headers, body, a delay before answering, `drop` to
close the connection without an answer, or a streamed body (huge, slow, or stalled after the headers). With `tls`
the receiver speaks HTTPS.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from dataclasses import dataclass, field

import cramjam
from aiohttp import web

from exporters.remote_write import remote_pb2


@dataclass
class Reply:
    """How to answer one request."""

    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    drop: bool = False
    stream: int = 0
    """Bytes of body streamed after the headers (chunked), `chunk` at a time, `chunk_delay` seconds apart."""
    chunk: int = 65536
    chunk_delay: float = 0.0
    stall: float = 0.0
    """Seconds of silence between the headers and the streamed body (ends early when the client goes)."""


@dataclass
class Received:
    """One request as the receiver saw it."""

    at: float
    headers: dict[str, str]
    body: bytes
    series: list[tuple[tuple[tuple[str, str], ...], float, int]]

    @property
    def samples(self) -> int:
        """Number of samples in the request."""
        return len(self.series)


class FakeReceiver:
    """Start with `await FakeReceiver().start()`, stop with `await receiver.stop()`."""

    def __init__(self, script: list[Reply] | None = None, default: Reply | None = None,
                 max_body: int | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.script = list(script or [])
        self.default = default or Reply()
        self.max_body = max_body
        self.tls = tls
        self.requests: list[Received] = []
        self.accepted: list[Received] = []
        self.streamed: list[int] = []
        """Body bytes each streamed reply got written before it ended or the client went away."""
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> FakeReceiver:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/api/v1/write", self._write)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}/api/v1/write"
        return self

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    def accepted_series(self) -> list[tuple[tuple[tuple[str, str], ...], float, int]]:
        """Every (labels, value, timestamp) of the requests answered with 2xx, in arrival order."""
        return [s for r in self.accepted for s in r.series]

    async def _write(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        payload = bytes(cramjam.snappy.decompress_raw(body))
        decoded = remote_pb2.WriteRequest.FromString(payload)
        series = [(tuple((lb.name, lb.value) for lb in ts.labels), s.value, s.timestamp)
                  for ts in decoded.timeseries for s in ts.samples]
        received = Received(asyncio.get_running_loop().time(), dict(request.headers), body, series)
        self.requests.append(received)
        reply = self.script.pop(0) if self.script else self.default
        if self.max_body is not None and len(body) > self.max_body:
            reply = Reply(413, body=b"request too large")
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        if 200 <= reply.status < 300:
            self.accepted.append(received)
        if reply.stream or reply.stall:
            return await self._stream(request, reply)
        return web.Response(status=reply.status, headers=reply.headers, body=reply.body)

    async def _stream(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        await response.prepare(request)
        sent = 0
        try:
            if await _gone(request, reply.stall):
                return response
            block = b"x" * reply.chunk
            while sent < reply.stream:
                await response.write(block[: reply.stream - sent])
                sent += min(reply.chunk, reply.stream - sent)
                if await _gone(request, reply.chunk_delay):
                    return response
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away, as it should for bodies it does not want
        finally:
            self.streamed.append(sent)
        return response


async def _gone(request: web.Request, seconds: float) -> bool:
    """Wait up to `seconds`, in steps of 10 ms; True as soon as the client has closed the connection."""
    for _ in range(max(1, round(seconds / 0.01)) if seconds else 1):
        if request.transport is None or request.transport.is_closing():
            return True
        if seconds:
            await asyncio.sleep(0.01)
    return False


def value_bits(value: float) -> int:
    """The IEEE 754 bits of a float."""
    return int(struct.unpack("<Q", struct.pack("<d", value))[0])
