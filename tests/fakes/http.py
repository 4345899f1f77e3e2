"""HTTP test targets: certificates from trustme, an aiohttp app with every behaviour the http tests need, servers.

In tests: `Servers()` runs sites on 127.0.0.x in a background thread with its own event loop, so a probe in the
test's loop, blackbox_exporter in its own process and blocking clients can all reach them.
As a script (the benchmark's target in its own process, so its CPU is not counted as the prober's):
`cd tests && python -m fakes.http --host 127.0.0.1 --port P [--cert-chain PEM --key PEM]` (as a module: run as a
file, this file would shadow the standard library's `http`); prints "ready" when listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import re
import ssl
import subprocess
import sys
import threading
import urllib.parse
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
import yaml
from aiohttp import web
from testlib import free_port, http_get, wait_for

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
LAST_MODIFIED_EPOCH = 1445412480
JSON_DOC = {"data": {"items": [{"count": 42}, {"count": 7.5}], "total": "1234", "enabled": True, "name": "x"}}
USERNAME, PASSWORD = "canbo", "mật-khẩu-1"
SESSION = "phien-dang-nhap-7"
EXPIRED_NOT_AFTER = datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC)


@dataclass
class Certs:
    """A trusted CA with leaves for 127.0.0.1, 127.0.0.2, localhost and portal.test; bad certificates."""

    directory: Path
    ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        identities = ("127.0.0.1", "127.0.0.2", "localhost", "portal.test")
        self.valid = self.ca.issue_cert(*identities)
        self.expired = self.ca.issue_cert(*identities, not_before=datetime.datetime(2020, 1, 1),
                                          not_after=EXPIRED_NOT_AFTER.replace(tzinfo=None))
        self.wrong_host = self.ca.issue_cert("other.test")
        self.untrusted_ca = trustme.CA()
        self.ca_file = self.directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self, which: str) -> ssl.SSLContext:
        """A server context presenting the `valid`, `expired`, `wrong_host` or `self_signed` certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if which == "self_signed":
            chain = self.directory / "self-signed.pem"
            chain.write_bytes(self.untrusted_ca.private_key_pem.bytes() + self.untrusted_ca.cert_pem.bytes())
            context.load_cert_chain(str(chain))
        else:
            getattr(self, which).configure_cert(context)
        return context

    def files(self, which: str = "valid") -> tuple[Path, Path]:
        """(certificate chain PEM, key PEM) of a leaf, written to the directory, for a server in another process."""
        leaf = getattr(self, which)
        chain, key = self.directory / f"{which}-chain.pem", self.directory / f"{which}-key.pem"
        chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        return chain, key

    def not_after(self, which: str) -> float:
        """The leaf's notAfter as a Unix time."""
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(getattr(self, which).cert_chain_pems[0].bytes())
        return cert.not_valid_after_utc.timestamp()


@dataclass
class Site:
    """A running target: its base URL and the requests it saw (method, path, headers, body)."""

    url: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None


def target_app(site: Site | None = None) -> web.Application:
    """The behaviours: status codes, redirects and loops, slow and endless bodies, gzip bombs, JSON, login.

    With a site, every request is recorded in site.seen.
    """

    @web.middleware
    async def record(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        body = await request.read()
        assert site is not None
        site.seen.append({"method": request.method, "path": request.path_qs, "headers": dict(request.headers),
                          "body": body.decode(errors="replace")})
        return await handler(request)

    routes = web.RouteTableDef()

    @routes.route("*", "/")
    async def root(_: web.Request) -> web.Response:
        return web.Response(text="<html><title>Cổng thông tin điện tử</title>Xin chào</html>", content_type="text/html",
                            headers={"Last-Modified": LAST_MODIFIED, "X-Frame-Options": "DENY"})

    @routes.route("*", "/status/{code}")
    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}")

    @routes.get("/redirect/{n}")
    async def redirect(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        if left <= 0:
            return web.Response(text="arrived")
        raise web.HTTPFound(f"/redirect/{left - 1}")

    @routes.get("/loop")
    async def loop(_: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    @routes.route("*", "/redirect-to")
    async def redirect_to(request: web.Request) -> web.Response:
        code = int(request.query.get("code", "302"))
        return web.Response(status=code, headers={"Location": request.query["url"]})

    @routes.route("*", "/echo")
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"method": request.method, "headers": dict(request.headers),
                                  "body": (await request.read()).decode(errors="replace")})

    @routes.get("/slow")
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", "60")))
        return web.Response(text="late")

    @routes.get("/endless")
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"x" * 65536
        with contextlib.suppress(ConnectionError):
            while True:
                await response.write(chunk)
        return response

    @routes.get("/trickle")
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while True:
                await response.write(b".")
                await asyncio.sleep(0.05)
        return response

    @routes.get("/gzip-bomb")
    async def gzip_bomb(request: web.Request) -> web.StreamResponse:
        # 16 GiB of zeros, compressed on the fly (about 16 MB on the wire if anyone read it all).
        response = web.StreamResponse(headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})
        await response.prepare(request)
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        zeros = bytes(1 << 20)
        with contextlib.suppress(ConnectionError):
            for _ in range(16 << 10):
                await response.write(compressor.compress(zeros))
            await response.write(compressor.flush())
        return response

    @routes.get("/compressed")
    async def compressed(request: web.Request) -> web.Response:
        kind = request.query.get("as", "gzip")
        text = ("Sở Thông tin và Truyền thông " * 100).encode()
        if kind == "gzip":
            data = zlib.compress(text, wbits=31)
        elif kind == "zlib":
            data = zlib.compress(text)
        else:
            compressor = zlib.compressobj(wbits=-15)
            data = compressor.compress(text) + compressor.flush()
        encoding = "gzip" if kind == "gzip" else "deflate"
        return web.Response(body=data, headers={"Content-Encoding": encoding, "X-Plain-Length": str(len(text))})

    @routes.get("/json")
    async def json_doc(_: web.Request) -> web.Response:
        return web.json_response(JSON_DOC)

    @routes.get("/not-json")
    async def not_json(_: web.Request) -> web.Response:
        return web.Response(text="{broken", content_type="application/json")

    @routes.get("/login")
    async def login_form(_: web.Request) -> web.Response:
        return web.Response(text='<form method="post"><input name="csrf" value="t0k3n"></form>',
                            content_type="text/html")

    @routes.post("/login")
    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("username") != USERNAME or form.get("password") != PASSWORD:
            return web.Response(status=401, text="sai mật khẩu")
        response = web.HTTPSeeOther("/dashboard")
        response.set_cookie("session", SESSION, httponly=True)
        raise response

    @routes.get("/dashboard")
    async def dashboard(request: web.Request) -> web.Response:
        if request.cookies.get("session") != SESSION:
            raise web.HTTPFound("/login")
        return web.Response(text="Văn bản đến: 12 chờ xử lý", content_type="text/html")

    app = web.Application(middlewares=[record] if site is not None else [])
    app.add_routes(routes)
    return app


class Servers:
    """Sites and raw TCP servers on 127.0.0.x, served by one background thread; close() stops them all."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="http-fakes", daemon=True)
        self._thread.start()
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def site(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Site:
        """Start the target app on a free port of `host`, over TLS if given a server context."""
        return self._call(self._start_site(host, tls))

    def raw(self, host: str = "127.0.0.1", reply: bytes | None = None) -> str:
        """A TCP server that accepts and then sends `reply` and closes, or (None) never says anything; 'host:port'."""
        return self._call(self._start_raw(host, reply))

    def close(self) -> None:
        """Stop every server, cancel what their handlers still do, and stop the thread."""
        for closer in reversed(self._closers):
            self._call(closer())
        self._call(self._cancel_leftovers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def _call(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=20)  # type: ignore[arg-type]

    async def _cancel_leftovers(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _start_site(self, host: str, tls: ssl.SSLContext | None) -> Site:
        site = Site("")
        runner = web.AppRunner(target_app(site), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        tcp = web.TCPSite(runner, host, 0, ssl_context=tls)
        await tcp.start()
        port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        site.url, site.runner = f"{'https' if tls else 'http'}://{shown}:{port}", runner
        self._closers.append(runner.cleanup)
        return site

    async def _start_raw(self, host: str, reply: bytes | None) -> str:
        held: list[asyncio.StreamWriter] = []

        async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if reply is None:
                held.append(writer)  # keep it open, say nothing
                return
            writer.write(reply)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, host, 0)

        async def close() -> None:
            for writer in held:
                writer.close()
            server.close()

        self._closers.append(close)
        return f"{host}:{server.sockets[0].getsockname()[1]}"


class Blackbox:
    """Debian's prometheus-blackbox-exporter on 127.0.0.1 with the given modules; stop() ends it by its PID."""

    def __init__(self, modules: dict[str, Any], directory: Path) -> None:
        self.config = directory / "blackbox.yml"
        self.config.write_text(yaml.safe_dump({"modules": modules}), encoding="utf-8")
        self.address = f"127.0.0.1:{free_port()}"
        self.log_path = directory / "blackbox.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["prometheus-blackbox-exporter", f"--config.file={self.config}",
                 f"--web.listen-address={self.address}"], stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._healthy, timeout=20)

    def probe(self, module: str, target: str) -> dict[str, float]:
        """GET /probe for the module and target; its samples as parse_metrics() gives them."""
        query = urllib.parse.urlencode({"module": module, "target": target})
        status, body, _ = http_get(f"http://{self.address}/probe?{query}", timeout=30)
        assert status == 200, body
        return parse_metrics(body.decode())

    def stop(self) -> None:
        """Terminate the exporter and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=10)

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"blackbox_exporter exited:\n{self.log_path.read_text()}")
        return http_get(f"http://{self.address}/-/healthy", timeout=1)[0] == 200


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text to {'name{label values,...}': value}, label values in their order, agent labels dropped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        pairs = re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)
        kept = [v for k, v in pairs if k not in _AGENT_LABELS]
        out[name + ("{" + ",".join(kept) + "}" if kept else "")] = float(value)
    return out


_AGENT_LABELS = {"check", "module", "service", "target", "org_id", "level"}


def main() -> int:
    """Serve the target app in this process until killed (the benchmark's target)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert-chain")
    parser.add_argument("--key")
    args = parser.parse_args()
    context = None
    if args.cert_chain:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert_chain, args.key)

    async def serve() -> None:
        runner = web.AppRunner(target_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port, ssl_context=context, backlog=1024).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
