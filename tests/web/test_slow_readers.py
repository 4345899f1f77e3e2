"""Clients that never read their answer: they give up the render slot and are cut off, scrapes go on.

The web server runs in the test's loop (exporters.web.WebServer with a real Exposition holding a ~6 MB body),
so the non-readers' stalled writes (bigger than the 4 MiB a loopback socket buffers) would hold the slot if it were
not given up after SLOT_SECONDS.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from prometheus_client import CollectorRegistry
from testlib import free_port

from agent.errors import Outcome
from agent.runner import Job, ProbeResult
from agent.store import ResultStore
from collectors.base import CollectorSpec, MetricSpec, Sample, Settings
from exporters.exposition import Exposition
from exporters.web import SLOT_SECONDS, WebContext, WebServer

SPEC = CollectorSpec("test", Settings, None, (MetricSpec("egov_test_value", "gauge", "v", ("part",)),))  # type: ignore[arg-type]


def big_exposition() -> Exposition:
    exposition = Exposition({"org_id": "000.00.20.H49", "level": "commune"})
    for job_index in range(100):
        job = Job("big", f"target-{job_index}", "mod", "other", 60.0, 5.0, SPEC, Settings())
        samples = [Sample("egov_test_value", (("part", f"p{i:04d}-" + "x" * 40),), float(i)) for i in range(400)]
        exposition.update(ProbeResult(job, True, Outcome.SUCCESS, 0.1, 1.0, samples))
    return exposition


async def ready() -> tuple[bool, str]:
    return True, "ok"


async def scrape(port: int) -> tuple[float, int]:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = await reader.read()
    writer.close()
    return time.monotonic() - started, len(body)


@pytest.mark.slow
async def test_clients_that_never_read_do_not_hold_scrapes() -> None:
    exposition = big_exposition()
    assert len(exposition.body()) > 5_000_000
    port = free_port()
    server = WebServer(WebContext(exposition, CollectorRegistry(auto_describe=False), ResultStore(),
                                  lambda: {}, ready, lambda: True), f"127.0.0.1:{port}", idle_timeout=2.0)
    await server.start()
    stuck = []
    try:
        for _ in range(8):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            await asyncio.get_running_loop().sock_sendall(sock, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            stuck.append(sock)
        await asyncio.sleep(0.2)
        elapsed, size = await asyncio.wait_for(scrape(port), timeout=8 * SLOT_SECONDS + 5)
        assert size > 5_000_000
        assert elapsed < 8 * SLOT_SECONDS + 2.0
        # The non-readers are cut off once idle_timeout passes without them taking their answer.
        await asyncio.sleep(3.0)
        for sock in stuck:
            sock.setblocking(True)
            sock.settimeout(5)
            got = 0
            try:
                while chunk := sock.recv(1 << 20):
                    got += len(chunk)
            except OSError:
                pass  # reset by the agent
            assert got < 5_000_000, "a client that did not read for idle_timeout still got its whole answer"
        assert await asyncio.wait_for(scrape(port), timeout=10)
    finally:
        for sock in stuck:
            sock.close()
        await server.stop()
