"""The agent's HTTP endpoints: /metrics, /-/healthy, /-/ready, POST /-/reload and the status page.

Hardening (RELIABILITY.md section 3, 6.5): no endpoint takes a target or anything else from the query string; the
web config file (agent/webconfig.py, exporter-toolkit's format) adds TLS, client certificates, bcrypt basic auth,
security headers and a rate limit, and is re-read within a second of a change (exporter-toolkit re-reads it per
request). Request lines and headers are capped, bodies are capped at 64 KiB, and a connection that is idle or
has not finished its request headers (slowloris) is closed after `idle_timeout`; a TLS handshake gets as long.
At most RENDER_SLOTS answers are rendered and written at once (a client slower than SLOT_SECONDS gives its slot
up and goes on alone; one that has not taken its answer after `idle_timeout` is cut off), so a burst of scrapes is
served a few per loop turn and never holds the event loop for long: probes share it. The agent's own metrics are
rendered at most every SELF_METRICS_MAX_AGE, one family at a time, and shared by the scrapes in between.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from agent.errors import ConfigError, StartupError
from agent.store import ResultStore
from agent.webconfig import PasswordChecker, RateLimiter, WebConfig, file_signature, load_web_config
from exporters.exposition import CONTENT_TYPE, Exposition, compress
from exporters.status_page import render_status_page

log = logging.getLogger(__name__)
GZIP_IN_THREAD_BYTES = 256 * 1024
DEFAULT_IDLE_TIMEOUT = 30.0
MAX_BODY_BYTES = 64 * 1024
MAX_LINE_BYTES = 8190
MAX_HEADERS = 64
RENDER_SLOTS = 1
SLOT_SECONDS = 0.1
WRITE_BUFFER_BYTES = 16 * 1024
"""A response's bytes left in the process after its slot is given up; the rest waited for the socket."""
WATCH_SECONDS = 1.0
SELF_METRICS_MAX_AGE = 0.25
BACKLOG = 128


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

    def __init__(self, context: WebContext, listen_address: str, web_config: WebConfig | None = None,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        self._context = context
        self.listen_address = listen_address
        self.web_config = web_config
        self.idle_timeout = idle_timeout
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._passwords = PasswordChecker()
        self._limiter: RateLimiter | None = None
        self._slots = asyncio.Semaphore(RENDER_SLOTS)
        self._failed_signature: tuple[Any, ...] | None = None
        self._tail: bytes | None = None
        self._tail_at = float("-inf")
        self._tail_task: asyncio.Task[bytes] | None = None

    @property
    def tls(self) -> bool:
        """Whether the listener speaks TLS."""
        return self.web_config is not None and self.web_config.ssl_context is not None

    async def start(self) -> None:
        """Bind and start serving."""
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._guard])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/-/healthy", self._healthy)
        app.router.add_get("/-/ready", self._ready)
        app.router.add_post("/-/reload", self._reload)
        app.router.add_put("/-/reload", self._reload)
        app.router.add_get("/", self._status)
        app.on_response_prepare.append(self._add_headers)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
            keepalive_timeout=self.idle_timeout, max_line_size=MAX_LINE_BYTES, max_field_size=MAX_LINE_BYTES,
            max_headers=MAX_HEADERS, lingering_time=min(2.0, self.idle_timeout), logger=_HttpLog(),
        )
        await self._runner.setup()
        self._apply_limits(self.web_config)
        try:
            self._server = await self._listen(self.web_config)
        except OSError as err:
            await self._runner.cleanup()
            self._runner = None
            reason = "address already in use" if err.errno == errno.EADDRINUSE else (err.strerror or str(err))
            raise StartupError(f"cannot listen on {self.listen_address}: {reason}") from None
        if self.web_config is not None:
            for warning in self.web_config.warnings:
                log.warning(warning, extra={"kv": {"web_config": self.web_config.path}})
            self._watcher = asyncio.create_task(self._watch(), name="web-config-watch")
        log.info("listening", extra={"kv": {"address": self.listen_address, "tls": self.tls,
                                            "basic_auth": bool(self.web_config and self.web_config.users)}})

    async def stop(self) -> None:
        """Stop serving and close connections."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _listen(self, config: WebConfig | None) -> asyncio.Server:
        host, port = split_listen_address(self.listen_address)
        assert self._runner is not None and self._runner.server is not None
        context = config.ssl_context if config is not None else None
        return await asyncio.get_running_loop().create_server(
            self._runner.server, host or None, port, ssl=context, backlog=BACKLOG, reuse_address=True,
            ssl_handshake_timeout=self.idle_timeout if context is not None else None,
            family=socket.AF_UNSPEC,
        )

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Client-certificate SANs, rate limit and basic auth before any handler; few handlers at a time."""
        config = self.web_config
        if config is not None:
            if config.allowed_sans is not None:
                transport = request.transport
                peercert = transport.get_extra_info("peercert") if transport is not None else None
                if not config.client_allowed(peercert):
                    raise web.HTTPForbidden(headers={"Connection": "close"})
            if self._limiter is not None and not self._limiter.allow(asyncio.get_running_loop().time()):
                raise web.HTTPTooManyRequests()
            if config.users:
                allowed = await self._authorized(request, config)
                if allowed is None:
                    raise web.HTTPTooManyRequests()
                if not allowed:
                    raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Basic"})
        await self._slots.acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._slots.release()

        # A client that does not read its answer holds the slot SLOT_SECONDS at most, its connection idle_timeout.
        slot = asyncio.get_running_loop().call_later(SLOT_SECONDS, release)
        try:
            response = await handler(request)
            if not response.prepared:
                # Written while holding the slot (write_eof waits until the socket took all but
                # WRITE_BUFFER_BYTES): only a few answers are pushed out at once, whatever the number of clients.
                if request.transport is not None:
                    request.transport.set_write_buffer_limits(high=WRITE_BUFFER_BYTES)
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        await response.prepare(request)
                        await response.write_eof()
                except TimeoutError:
                    if request.transport is not None:
                        request.transport.abort()
            return response
        finally:
            slot.cancel()
            release()

    async def _authorized(self, request: web.Request, config: WebConfig) -> bool | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
            raw_user, colon, password = decoded.partition(b":")
            user = raw_user.decode("utf-8")
        except (binascii.Error, ValueError):
            return False
        if not colon:
            return False
        return await self._passwords.check(config, user, password)

    async def _add_headers(self, _: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = "egov-agent"  # not aiohttp's and Python's versions
        if self.web_config is not None:
            for name, value in self.web_config.headers.items():
                response.headers[name] = value

    def _apply_limits(self, config: WebConfig | None) -> None:
        limit = config.model.rate_limit if config is not None else None
        if limit is None or limit.interval <= 0:
            self._limiter = None
        elif self._limiter is None or (self._limiter.interval, self._limiter.burst) != (limit.interval, limit.burst):
            self._limiter = RateLimiter(limit.interval, limit.burst, asyncio.get_running_loop().time())

    async def _watch(self) -> None:
        """Re-read the web config when it or a file it names changes; a bad one keeps the running config."""
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            current = self.web_config
            assert current is not None
            signature = file_signature([entry[0] for entry in current.signature])
            if signature == current.signature and self._server is not None:
                continue
            try:
                loaded = await asyncio.to_thread(load_web_config, current.path)
            except ConfigError as err:
                if signature != self._failed_signature:
                    self._failed_signature = signature
                    log.error("web config reload failed; keeping the running web config",
                              extra={"kv": {"web_config": current.path, "errors": err.render()}})
                continue
            self._failed_signature = None
            await self._apply(loaded)

    async def _apply(self, loaded: WebConfig) -> None:
        previous = self.web_config
        self.web_config = loaded
        self._apply_limits(loaded)
        if previous is None or previous.tls_key != loaded.tls_key or self._server is None:
            # The TLS settings of a listening socket are fixed: listen again. Open connections keep going.
            if self._server is not None:
                self._server.close()
                self._server = None
            try:
                self._server = await self._listen(loaded)
            except OSError as err:
                log.error("cannot listen again after a web config change; retrying",
                          extra={"kv": {"address": self.listen_address, "err": err.strerror or str(err)}})
                return
        for warning in loaded.warnings:
            log.warning(warning, extra={"kv": {"web_config": loaded.path}})
        log.info("web config reloaded", extra={"kv": {"web_config": loaded.path, "tls": self.tls,
                                                      "basic_auth": bool(loaded.users)}})

    async def _metrics(self, request: web.Request) -> web.Response:
        exposition = self._context.exposition
        tail = await self._self_metrics()
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

    async def _self_metrics(self) -> bytes:
        """The agent's own metrics as text, rendered at most every SELF_METRICS_MAX_AGE and shared by scrapes."""
        loop = asyncio.get_running_loop()
        if self._tail is not None and loop.time() - self._tail_at < SELF_METRICS_MAX_AGE:
            return self._tail
        if self._tail_task is None:
            self._tail_task = loop.create_task(self._render_self_metrics())
        return await asyncio.shield(self._tail_task)

    async def _render_self_metrics(self) -> bytes:
        # prometheus_client renders ~20 us a sample (about 5 ms for the agent's own metrics): one family at a
        # time, letting probes run in between, instead of one block per scrape.
        try:
            started = asyncio.get_running_loop().time()
            families = list(self._context.registry.collect())
            parts = []
            for family in families:
                parts.append(generate_latest(_Families([family])))
                await asyncio.sleep(0)
            self._tail, self._tail_at = b"".join(parts), started
            return self._tail
        finally:
            self._tail_task = None

    async def _healthy(self, _: web.Request) -> web.Response:
        return web.Response(text="Healthy.\n")

    async def _ready(self, _: web.Request) -> web.Response:
        if self._context.ready():
            return web.Response(text="Ready.\n")
        return web.Response(status=503, text="Not ready.\n")

    async def _reload(self, _: web.Request) -> web.Response:
        ok, message = await self._context.reload()
        self._tail_at = float("-inf")  # the next scrape shows the reload's outcome
        if ok:
            return web.Response(text="Reloaded.\n")
        return web.Response(status=500, text=f"Reload failed; the previous config keeps running.\n{message}\n")

    async def _status(self, _: web.Request) -> web.Response:
        html = render_status_page(self._context.store.status(), self._context.office())
        return web.Response(text=html, content_type="text/html", charset="utf-8")


class _Families:
    """Metric families already collected, in the shape generate_latest reads (a registry's collect())."""

    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> list[Any]:
        """The families, as given."""
        return self._families


class _HttpLog(logging.Logger):
    """aiohttp's server log: malformed or oversized requests from outside are a debug line, not an error with a
    traceback (a stream of them would flood the log); errors in the agent's own handlers stay errors."""

    def __init__(self) -> None:
        super().__init__("exporters.web.http")
        self.parent = log

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        """Log a request error, quietly when the client sent a bad request."""
        from aiohttp.http_exceptions import HttpProcessingError

        if isinstance(exc_info, HttpProcessingError):
            self.debug("bad request refused", extra={"kv": {"err": exc_info.message}})
            return
        self.error(msg, *args, exc_info=exc_info, **kwargs)


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
