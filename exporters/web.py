"""The agent's HTTP endpoints: /metrics, /-/healthy, /-/ready, POST /-/reload and the status page."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from agent.errors import StartupError
from agent.store import ResultStore
from exporters.exposition import CONTENT_TYPE, Exposition, compress
from exporters.status_page import render_status_page

log = logging.getLogger(__name__)
GZIP_IN_THREAD_BYTES = 256 * 1024


@dataclass
class WebContext:
    """What the endpoints read from the running agent."""

    exposition: Exposition
    registry: CollectorRegistry
    store: ResultStore
    office: Callable[[], dict[str, str]]
    reload: Callable[[], Awaitable[tuple[bool, str]]]
    ready: Callable[[], bool]


class WebServer:
    """Serves the endpoints on one listen address; start() fails with StartupError naming the address."""

    def __init__(self, context: WebContext, listen_address: str) -> None:
        self._context = context
        self.listen_address = listen_address
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and start serving."""
        host, port = split_listen_address(self.listen_address)
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/-/healthy", self._healthy)
        app.router.add_get("/-/ready", self._ready)
        app.router.add_post("/-/reload", self._reload)
        app.router.add_put("/-/reload", self._reload)
        app.router.add_get("/", self._status)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host or None, port, reuse_address=True)
        try:
            await site.start()
        except OSError as err:
            await self._runner.cleanup()
            self._runner = None
            reason = "address already in use" if err.errno == errno.EADDRINUSE else (err.strerror or str(err))
            raise StartupError(f"cannot listen on {self.listen_address}: {reason}") from None
        log.info("listening", extra={"kv": {"address": self.listen_address}})

    async def stop(self) -> None:
        """Stop serving and close connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        exposition = self._context.exposition
        tail = generate_latest(self._context.registry)
        body = exposition.body()
        if "gzip" not in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=body + tail, headers={"Content-Type": CONTENT_TYPE})
        gzipped = exposition.cached_gzip(body)
        if gzipped is None:
            if len(body) > GZIP_IN_THREAD_BYTES:
                # zlib releases the GIL: a 2 MiB body (10k series) takes ~6 ms, too long to block probes for.
                gzipped = await asyncio.to_thread(compress, body)
            else:
                gzipped = compress(body)
            exposition.keep_gzip(body, gzipped)
        # Two gzip members are one valid gzip stream: the large one is compressed once per change.
        return web.Response(body=gzipped + compress(tail),
                            headers={"Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip"})

    async def _healthy(self, _: web.Request) -> web.Response:
        return web.Response(text="Healthy.\n")

    async def _ready(self, _: web.Request) -> web.Response:
        if self._context.ready():
            return web.Response(text="Ready.\n")
        return web.Response(status=503, text="Not ready.\n")

    async def _reload(self, _: web.Request) -> web.Response:
        ok, message = await self._context.reload()
        if ok:
            return web.Response(text="Reloaded.\n")
        return web.Response(status=500, text=f"Reload failed; the previous config keeps running.\n{message}\n")

    async def _status(self, _: web.Request) -> web.Response:
        html = render_status_page(self._context.store.status(), self._context.office())
        return web.Response(text=html, content_type="text/html", charset="utf-8")


def split_listen_address(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` to (host, port); an empty host means every interface."""
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        raise StartupError(f"invalid listen address {address!r}: want HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise StartupError(f"invalid listen address {address!r}: port out of range")
    return host, number
