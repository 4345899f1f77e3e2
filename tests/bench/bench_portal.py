"""CPU of one portal check of a 50-page site, against a plain aiohttp fetch of the same 50 pages (the floor).

The site (tests/fakes/portal_site.py: ~56 KB pages with ~200 links, RSS, sitemap, robots.txt) runs in its own
process, so the process CPU measured here (time.process_time around the run) is the prober's alone. The portal
check runs in-process through agent.runner.run_job with the module as a config would build it. Goal (issue 6): a
portal check of a 50-page site <= 0.5 CPU-seconds. No peer is defined; the floor is aiohttp fetching the same
50 URLs and reading the bodies, with a new connection per request (as the crawl does) and kept alive.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import _common

GOAL_CPU_SECONDS = 0.5
PAGES = 50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 measured runs instead of 10")
    args = parser.parse_args()
    runs = 3 if args.quick else 10
    processes = _common.Processes()
    try:
        port = _common.free_port()
        site = processes.start([sys.executable, "-m", "fakes.portal_site", "--port", str(port), "--pages",
                                str(PAGES)], _common.RESULTS_DIR / "logs" / "bench_portal-site.log",
                               cwd=_common.REPO / "tests")
        base = f"http://127.0.0.1:{port}"
        _common.wait_http(base + "/robots.txt", site)
        result = asyncio.run(_measure(base, runs))
    finally:
        processes.stop_all()
    _report(result)
    return 0


async def _measure(base: str, runs: int) -> dict[str, Any]:
    from pydantic import TypeAdapter

    from agent.config import module_model
    from agent.runner import Job, run_job
    from collectors import COLLECTORS

    module = TypeAdapter(module_model()).validate_python(
        {"kind": "portal", "timeout": "30s", "portal": {"max_pages": PAGES}})
    job = Job("portal", base + "/", "portal_content", "portal", 300.0, module.timeout, COLLECTORS["portal"],
              module.portal)
    urls = await _page_urls(base)
    portal: list[tuple[float, float]] = []
    crawled = 0.0
    for index in range(runs + 1):  # the first run loads aiohttp's client and warms caches: not counted
        cpu, wall = time.process_time(), time.perf_counter()
        result = await run_job(job)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if not result.success:
            raise RuntimeError(f"the portal check failed: {result.outcome} {result.error}")
        crawled = next(s.value for s in result.samples if s.name == "egov_portal_pages_crawled")
        if index:
            portal.append((cpu, wall))
    floors = {}
    for name, force_close in (("aiohttp, new connection per page", True), ("aiohttp, kept alive", False)):
        samples = []
        for index in range(runs + 1):
            cpu = time.process_time()
            await _fetch_all(urls, force_close)
            if index:
                samples.append(time.process_time() - cpu)
        floors[name] = samples
    return {"runs": runs, "pages_crawled": crawled, "portal": portal, "floors": floors, "urls": len(urls)}


async def _page_urls(base: str) -> list[str]:
    """The site's 50 HTML pages, read from its sitemap (the floor fetches exactly what the crawl fetches)."""
    import re

    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(base + "/sitemap.xml") as response:
        text = await response.text()
    return [base + path for path in re.findall(r"<loc>([^<]+)</loc>", text)]


async def _fetch_all(urls: list[str], force_close: bool) -> None:
    import aiohttp

    connector = aiohttp.TCPConnector(force_close=force_close, limit=2)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(url: str) -> None:
            async with session.get(url) as response:
                await response.read()

        await asyncio.gather(*(one(url) for url in urls))


def _report(result: dict[str, Any]) -> None:
    portal_cpu = [cpu for cpu, _ in result["portal"]]
    portal_wall = [wall for _, wall in result["portal"]]
    median = statistics.median(portal_cpu)
    rows: list[list[Any]] = [["portal check (run_job, default politeness)", median, max(portal_cpu),
                              statistics.median(portal_wall), "1x"]]
    for name, samples in result["floors"].items():
        floor = statistics.median(samples)
        rows.append([f"floor: {name}", floor, max(samples), None, _common.fmt_ratio(_common.ratio(median, floor))])
    _common.print_table(f"CPU seconds per check of a {PAGES}-page site ({result['runs']} runs, "
                        f"{result['pages_crawled']:.0f} pages crawled; ratio = portal / row)",
                        ["what", "cpu median s", "cpu max s", "wall median s", "portal / this"], rows, digits=3)
    met = median <= GOAL_CPU_SECONDS
    print(f"\ngoal: portal check <= {GOAL_CPU_SECONDS} CPU-s: {'met' if met else 'NOT met'} ({median:.3f} s)")
    _common.write_result("bench_portal", {
        "pages": PAGES, "pages_crawled": result["pages_crawled"], "runs": result["runs"],
        "portal_cpu_seconds": portal_cpu, "portal_wall_seconds": portal_wall,
        "floors_cpu_seconds": result["floors"], "goal_cpu_seconds": GOAL_CPU_SECONDS, "goal_met": met,
    })


if __name__ == "__main__":
    sys.exit(main())
