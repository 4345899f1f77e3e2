"""A loopback TCP proxy that breaks the link on command: pass, refuse, reset, blackhole, drop_response, or a flap.

It runs its own event loop in a thread, so synchronous tests that drive processes can use it as well as async
ones. Changing the mode also cuts the connections already open (a WAN cut does too):

- pass: relay both ways to the upstream port;
- refuse: the listening socket is closed, connecting gets ECONNREFUSED;
- reset: connections are accepted and reset at once (RST, SO_LINGER 0);
- blackhole: connections are accepted and then nothing is read or written, ever;
- drop_response: the request goes upstream, and when the upstream's answer starts the client's connection is reset
  instead (the receiver stored the data, the sender saw a network error: an ambiguous success), counted in
  `dropped_responses`;
- flap: up (pass) and down (refuse or reset, alternating) for random durations from a seeded generator.
Only 127.0.0.1 is used, on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "refuse", "reset", "blackhole", "drop_response"]


class FaultProxy:
    """`FaultProxy(upstream_port).start()`, then `set_mode(...)` or `flap(...)`; `stop()` at the end."""

    def __init__(self, upstream_port: int, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self.port = port
        self.mode: Mode = "pass"
        self.connections = 0
        self.dropped_responses = 0
        self.history: list[tuple[float, Mode]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._flapper: asyncio.Task[None] | None = None

    def start(self) -> FaultProxy:
        """Start listening on 127.0.0.1 (a free port unless one was given)."""
        self._thread.start()
        self._call(self._listen())
        return self

    def set_mode(self, mode: Mode) -> None:
        """Switch mode now; open connections are reset."""
        self._call(self._set(mode, stop_flapping=True))

    def flap(self, seed: int, up: tuple[float, float] = (2.0, 6.0), down: tuple[float, float] = (2.0, 6.0)) -> None:
        """Toggle between pass and a down mode for random durations (seconds) until another mode is set."""
        self._call(self._start_flap(seed, up, down))

    def stop(self) -> None:
        """Close everything and end the thread."""
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        """Base URL through the proxy."""
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _set(self, mode: Mode, stop_flapping: bool) -> None:
        if stop_flapping and self._flapper is not None:
            self._flapper.cancel()
            self._flapper = None
        self.mode = mode
        self.history.append((self._loop.time(), mode))
        for writer in list(self._open):
            _reset(writer)
        self._open.clear()
        if mode == "refuse":
            if self._server is not None:
                self._server.close()
                self._server = None
        else:
            await self._listen()

    async def _start_flap(self, seed: int, up: tuple[float, float], down: tuple[float, float]) -> None:
        if self._flapper is not None:
            self._flapper.cancel()
        self._flapper = self._loop.create_task(self._flap(random.Random(seed), up, down))

    async def _flap(self, rng: random.Random, up: tuple[float, float], down: tuple[float, float]) -> None:
        downs: list[Mode] = ["refuse", "reset"]
        while True:
            await self._set("pass", stop_flapping=False)
            await asyncio.sleep(rng.uniform(*up))
            await self._set(downs[0], stop_flapping=False)
            downs.reverse()
            await asyncio.sleep(rng.uniform(*down))

    async def _shutdown(self) -> None:
        if self._flapper is not None:
            self._flapper.cancel()
        for writer in list(self._open):
            _reset(writer)
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        mode = self.mode
        if mode in ("reset", "refuse"):
            _reset(writer)
            return
        self._open.add(writer)
        if mode == "blackhole":
            return  # keep the socket open and never touch it
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _reset(writer)
            return
        self._open.add(up_writer)
        if mode == "drop_response":
            await self._drop_response(reader, writer, up_reader, up_writer)
        else:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)
        for w in (writer, up_writer):
            self._open.discard(w)
            with contextlib.suppress(Exception):
                w.close()

    async def _drop_response(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                             up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        """Relay the request upstream; reset the client's connection as soon as the upstream starts to answer."""
        forward = asyncio.ensure_future(_pipe(reader, up_writer))
        try:
            answer = await up_reader.read(1)
        except OSError:
            answer = b""
        if answer:
            self.dropped_responses += 1
        forward.cancel()
        await asyncio.gather(forward, return_exceptions=True)
        _reset(writer)
        _reset(up_writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
