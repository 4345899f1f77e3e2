"""The crawl of one portal: home page, robots.txt, then same-origin pages, feeds and sitemaps under the caps.

Imported only when a portal check runs (it loads aiohttp's client through collectors._http_client).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit, urlunsplit

from agent.errors import Outcome, ProbeError, ProtocolError
from collectors import _http_client, _portal_dates, _portal_robots, _resolve
from collectors._portal_html import Link, Page, parse_page
from collectors._portal_items import ItemRule, fold
from collectors.http import USER_AGENT

if TYPE_CHECKING:
    import ssl

    from collectors._http_client import Exchange
    from collectors.base import ProbeContext
    from collectors.portal import PortalSettings

ROBOTS_TOKEN = "egov-agent"
MAX_REDIRECTS = 10
MAX_FEEDS = 5
MAX_SITEMAPS = 3
MAX_KNOWN_URLS = 10_000
MAX_LOGGED_BROKEN = 20
_HEADERS = {"User-Agent": USER_AGENT, "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "Accept-Encoding": "gzip"}
_NOT_PAGES = (".pdf", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".ods", ".rtf", ".zip", ".rar",
              ".7z", ".gz", ".tar", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".svg", ".webp", ".ico", ".tif", ".tiff",
              ".mp3", ".mp4", ".avi", ".mov", ".wmv", ".flv", ".webm", ".exe", ".msi", ".iso", ".apk", ".css", ".js",
              ".woff", ".woff2", ".ttf", ".eot", ".signed")
_SKIPPED_SCHEMES = ("#", "javascript:", "mailto:", "tel:", "data:", "sms:", "callto:")
_PAGE, _FEED, _SITEMAP = "page", "feed", "sitemap"


@dataclass
class Crawl:
    """What a crawl found; recorded as metrics whatever happened."""

    home_status: int = 0
    home_ssl: ssl.SSLObject | None = None
    home_done: bool = False
    pages: int = 0
    page_bytes: int = 0
    html_pages: int = 0
    broken: int = 0
    broken_examples: list[str] = field(default_factory=list)
    truncated: set[str] = field(default_factory=set)
    """Why the crawl did not cover everything it found: max_pages, max_depth, page_size_limit, timeout, ..."""
    found: dict[str, str] = field(default_factory=dict)
    """Item -> the URL where it was first seen."""
    page_days: list[set[float]] = field(default_factory=list)
    times: dict[str, list[float]] = field(default_factory=lambda: {"feeds": [], "sitemaps": [], "pages": []})
    disallowed: int = 0


@dataclass(order=True, slots=True)
class _Job:
    priority: tuple[int, int, int]
    url: str = field(compare=False)
    kind: str = field(compare=False)
    depth: int = field(compare=False)
    referrer: str = field(compare=False)


class Crawler:
    """One run of a portal check; run() returns False after ctx.fail() when the home page fails."""

    def __init__(self, ctx: ProbeContext, settings: PortalSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.result = Crawl()
        self._items: dict[str, ItemRule] = dict(settings.all_items())
        self._content_wanted = any(rule.content for rule in self._items.values())
        self._client: _http_client.Client | None = None
        self._origin: tuple[str, str, int] = ("", "", 0)
        self._home_url = ""
        self._robots = _portal_robots.ALLOW_ALL
        self._interval = settings.min_interval
        self._next_start = 0.0
        self._queue: list[_Job] = []
        self._wakeup = asyncio.Event()
        self._active = 0
        self._seen: set[str] = set()
        self._feeds = self._sitemaps = 0
        self._sequence = itertools.count()
        self._absolute: dict[str, str | None] = {}
        self._bug: BaseException | None = None

    async def run(self) -> bool:
        """Crawl within the run's deadline (less a margin to record the results)."""
        ctx, settings = self.ctx, self.settings
        deadline = ctx.deadline - min(0.3, ctx.remaining() / 10)
        target = _http_client.URL(ctx.target)
        try:
            async with asyncio.timeout_at(deadline):
                address = await _resolve.resolve(ctx, target.host or "", settings.preferred_ip_protocol,
                                                 settings.ip_protocol_fallback)
                if address is None:
                    return False
                self._client = _http_client.Client(target.host or "", address, settings.preferred_ip_protocol,
                                                   settings.ip_protocol_fallback)
                try:
                    if not await self._home(ctx.target):
                        return False
                    await self._crawl()
                finally:
                    await self._client.close()
        except TimeoutError:
            if not self.result.home_done:
                return ctx.fail(Outcome.TIMEOUT, "the home page did not load within the module's timeout")
            self.result.truncated.add("timeout")
            ctx.log("the module's timeout ended the crawl after %d pages", self.result.pages)
        except ProbeError as err:
            return ctx.fail(err.outcome, "home page: %s", err)
        if self._bug is not None:
            raise self._bug
        return True

    # ------------------------------------------------------------------------------------------ phases

    async def _home(self, url: str) -> bool:
        ctx, result = self.ctx, self.result
        start = _normalise(url)
        if start is None:
            return ctx.fail(Outcome.MISMATCH, "the target %r is not an http(s) URL", url)
        exchange, final = await self._get(start, same_origin_only=False)
        result.home_status = exchange.status
        result.home_ssl = exchange.trip.ssl_object
        result.pages += 1
        if exchange.location is not None:
            exchange.close()
            return ctx.fail(Outcome.PROTOCOL_ERROR, "home page: more than %d redirects", MAX_REDIRECTS)
        if not 200 <= exchange.status < 300:
            exchange.close()
            return ctx.fail(Outcome.MISMATCH, "home page %s answered %d %s", final, exchange.status, exchange.reason)
        self._origin = _origin(final)
        self._home_url = final
        self._seen.update((start, final))
        page = await self._read_page(exchange, final, 0)
        if page is None:
            return ctx.fail(Outcome.MISMATCH, "home page %s is not HTML (Content-Type %s)", final,
                            exchange.headers.get("Content-Type", "none"))
        result.home_done = True
        await self._read_robots()
        self._see(page, final, 0)
        for path in self.settings.feeds:
            self._push(_resolve_href(final, path, None), _FEED, 0, "")
        for path in (*self.settings.sitemaps, *self._robots.sitemaps):
            self._push(_resolve_href(final, path, None), _SITEMAP, 0, "")
        return True

    async def _read_robots(self) -> None:
        if not self.settings.respect_robots_txt:
            return
        url = _resolve_href(self._home_url, "/robots.txt", None)
        assert url is not None
        try:
            exchange, _ = await self._get(url, same_origin_only=True)
            if 200 <= exchange.status < 300 and exchange.location is None:
                text, _ = await self._read_text(exchange, _portal_robots.MAX_BYTES)
                self._robots = _portal_robots.parse(text, ROBOTS_TOKEN)
        except (ProbeError, TimeoutError) as err:
            self._robots = _portal_robots.DISALLOW_ALL
            self.ctx.log("robots.txt: %s; crawling nothing but the home page (RFC 9309)", err, level="warning")
            return
        if exchange.status >= 500:
            exchange.close()
            self._robots = _portal_robots.DISALLOW_ALL
            self.ctx.log("robots.txt answered %d; crawling nothing but the home page (RFC 9309)", exchange.status,
                         level="warning")
            return
        if exchange.status >= 300:
            exchange.close()
            self.ctx.log("no robots.txt (%d): every page may be crawled", exchange.status)
            return
        delay = self._robots.crawl_delay
        if delay is not None and delay > self._interval:
            self._interval = delay
            self.ctx.log("robots.txt asks for a crawl delay of %gs", delay)

    async def _crawl(self) -> None:
        workers = [asyncio.create_task(self._worker()) for _ in range(self.settings.max_in_flight)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            while not self._queue:
                if not self._active:
                    self._wakeup.set()  # nothing queued, nothing running: the crawl is over
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            job = heapq.heappop(self._queue)
            if job.kind == _PAGE and self.result.pages >= self.settings.max_pages:
                self.result.truncated.add("max_pages")
                continue
            self._active += 1
            try:
                await self._run_job(job)
            except Exception as err:  # noqa: BLE001 - a bug ends the crawl and reaches the runner, not a hang
                self._bug = err
                self._queue.clear()
            finally:
                self._active -= 1
                self._wakeup.set()

    async def _run_job(self, job: _Job) -> None:
        result = self.result
        if job.kind == _PAGE:
            result.pages += 1
        try:
            exchange, final = await self._get(job.url, same_origin_only=True)
        except (ProbeError, TimeoutError) as err:
            if job.referrer:
                self._broken(job, str(err) or "no answer in time")
            return
        if exchange.location is not None:  # to another site, or too many redirects: not followed, not broken
            exchange.close()
            return
        if exchange.status >= 400:
            exchange.close()
            if job.referrer:
                self._broken(job, f"{exchange.status} {exchange.reason}")
            return
        if final != job.url:
            if final in self._seen and job.kind == _PAGE:
                exchange.close()
                return
            self._seen.add(final)
        try:
            if job.kind == _PAGE:
                page = await self._read_page(exchange, final, job.depth)
                if page is not None:
                    self._see(page, final, job.depth)
            else:
                text, _ = await self._read_text(exchange, self.settings.page_size_limit)
                await self._dates_from_xml(text, job.kind)
        except (ProbeError, TimeoutError) as err:
            if job.referrer:
                self._broken(job, str(err) or "no answer in time")

    # ------------------------------------------------------------------------------------------ pages

    async def _read_page(self, exchange: Exchange, url: str, depth: int) -> Page | None:
        kind = exchange.headers.get("Content-Type", "").lower()
        if kind and "html" not in kind:
            if "xml" in kind or "rss" in kind or "atom" in kind:
                text, _ = await self._read_text(exchange, self.settings.page_size_limit)
                await self._dates_from_xml(text, _FEED if "<rss" in text[:2048] or "<feed" in text[:2048] else _SITEMAP)
            else:
                exchange.close()
            return None
        text, size = await self._read_text(exchange, self.settings.page_size_limit)
        if not kind and text.lstrip()[:1] != "<":
            return None
        self.result.page_bytes += size
        self.result.html_pages += 1
        # In a worker thread: html.parser takes ~4 ms per 56 KB page, and a page may be up to page_size_limit.
        page = await asyncio.to_thread(parse_page, text)
        self.ctx.log("page %s (depth %d): %d bytes, %d links", url, depth, size, len(page.links))
        return page

    async def _read_text(self, exchange: Exchange, limit: int) -> tuple[str, int]:
        encoding = exchange.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity", "gzip", "deflate"):
            exchange.close()
            raise ProtocolError(f"unsupported Content-Encoding {encoding!r}")
        body = await exchange.read(limit, encoding if encoding in ("gzip", "deflate") else "", keep=True)
        if body.too_large:
            self.result.truncated.add("page_size_limit")
            self.ctx.log("%s is larger than page_size_limit (%d bytes): read in part", exchange.trip.url, limit)
        data = body.data or b""
        try:
            text = data.decode(exchange.charset or "utf-8", errors="replace")
        except LookupError:
            text = data.decode("utf-8", errors="replace")
        return text, len(data)

    def _see(self, page: Page, url: str, depth: int) -> None:
        """Match items on the page, keep its dates, queue its same-origin links."""
        result = self.result
        base = urljoin(url, page.base) if page.base else url
        links = [(_resolve_href(base, link.href, self._absolute), link) for link in page.links]
        if self._items:
            self._match(page, url, links)
        result.page_days.append(_portal_dates.page_days(page.text))
        for stamp in page.times:
            parsed = _portal_dates.iso_time(stamp)
            if parsed is not None:
                result.times["pages"].append(parsed)
        for feed in page.feeds:
            self._push(_resolve_href(base, feed, self._absolute), _FEED, depth, url)
        targets = [absolute for absolute, _ in links] + [_resolve_href(base, src, self._absolute)
                                                          for src in page.frames]
        for absolute in targets:
            self._push(absolute, _PAGE, depth + 1, url)

    def _match(self, page: Page, url: str, links: list[tuple[str | None, Link]]) -> None:
        found = self.result.found
        for name, rule in list(self._items.items()):
            if (rule.search_form and page.search_form) or (
                    page.lang and any(_same_language(page.lang, lang) for lang in rule.languages)):
                found[name] = url
                del self._items[name]
        if self._content_wanted and any(rule.content for rule in self._items.values()):
            text = fold(page.text)
            for name, rule in list(self._items.items()):
                if any(phrase in text for phrase in rule.content):
                    found[name] = url
                    del self._items[name]
        for absolute, link in links:
            if not self._items:
                return
            text = fold(link.text) if link.text else ""
            for name, rule in list(self._items.items()):
                if (text and any(phrase in text for phrase in rule.link_texts)) or (
                        absolute and any(pattern.search(absolute) for pattern in rule.url_patterns)) or (
                        link.hreflang and any(_same_language(link.hreflang, lang) for lang in rule.languages)):
                    found[name] = absolute or link.href
                    del self._items[name]

    async def _dates_from_xml(self, text: str, kind: str) -> None:
        if kind == _SITEMAP:
            self.result.times["sitemaps"].extend(await asyncio.to_thread(_portal_dates.sitemap_times, text))
        else:
            self.result.times["feeds"].extend(await asyncio.to_thread(_portal_dates.feed_times, text))

    def _push(self, url: str | None, kind: str, depth: int, referrer: str) -> None:
        if url is None or url in self._seen or _origin(url) != self._origin:
            return
        parts = urlsplit(url)
        if kind == _PAGE and parts.path.lower().endswith(_NOT_PAGES):
            return
        if not self._robots.allowed((parts.path or "/") + (f"?{parts.query}" if parts.query else "")):
            self._seen.add(url)
            self.result.disallowed += 1
            return
        if kind == _PAGE and depth > self.settings.max_depth:
            self.result.truncated.add("max_depth")
            return
        if kind == _FEED:
            if self._feeds >= MAX_FEEDS:
                return
            self._feeds += 1
        elif kind == _SITEMAP:
            if self._sitemaps >= MAX_SITEMAPS:
                return
            self._sitemaps += 1
        if len(self._seen) >= MAX_KNOWN_URLS:
            self.result.truncated.add("max_known_urls")
            return
        self._seen.add(url)
        order = 0 if kind != _PAGE else 1
        heapq.heappush(self._queue, _Job((order, depth, next(self._sequence)), url, kind, depth, referrer))
        self._wakeup.set()

    def _broken(self, job: _Job, why: str) -> None:
        self.result.broken += 1
        if len(self.result.broken_examples) < MAX_LOGGED_BROKEN:
            self.result.broken_examples.append(f"{job.url} ({why}), linked from {job.referrer}")
        self.ctx.log("broken link %s: %s (on %s)", job.url, why, job.referrer, level="warning")

    # ------------------------------------------------------------------------------------------ requests

    async def _get(self, url: str, same_origin_only: bool) -> tuple[Exchange, str]:
        """GET `url` following redirects (same-origin ones only, unless told); the last response and its URL."""
        assert self._client is not None
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                request_url = _http_client.URL(current)
            except ValueError:
                raise ProtocolError(f"bad URL {current!r}") from None
            async with self._polite():
                exchange = await self._client.send("GET", request_url, dict(_HEADERS), None,
                                                   self.settings.tls_config, None, None,
                                                   max(0.001, self.ctx.remaining()))
            location = exchange.location
            if location is None:
                return exchange, current
            following = _resolve_href(current, location, None)
            if following is None or (same_origin_only and _origin(following) != self._origin):
                return exchange, current
            exchange.close()
            current = following
        return exchange, current

    @asynccontextmanager
    async def _polite(self) -> AsyncIterator[None]:
        """Starts of requests at least min_interval (or robots.txt's Crawl-delay) apart."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._next_start)
        self._next_start = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)
        yield


def newest_update(crawl: Crawl, sources: tuple[str, ...], now: float | None = None) -> tuple[float, str] | None:
    """The newest update time and its source.

    Today's date on at least two thirds of the HTML pages (3 or more) is the clock many portals show in their
    header, not news: it is left out. Dates in the future are not updates.
    """
    now = time.time() if now is None else now
    candidates: list[tuple[float, str]] = []
    for source in ("feeds", "sitemaps"):
        if source in sources:
            candidates += [(stamp, source) for stamp in crawl.times[source] if stamp <= now + 3600]
    if "pages" in sources:
        days = crawl.page_days
        today = _portal_dates.page_days(datetime.fromtimestamp(now, _portal_dates.VIETNAM).strftime("%d/%m/%Y"))
        clock = today if len(days) >= 3 and sum(1 for page in days if page & today) * 3 >= len(days) * 2 else set()
        candidates += [(day, "pages") for page in days for day in page - clock if day <= now]
        candidates += [(stamp, "pages") for stamp in crawl.times["pages"] if stamp <= now + 3600]
    return max(candidates) if candidates else None


def _resolve_href(base: str, href: str, cache: dict[str, str | None] | None) -> str | None:
    """An href as a normalised absolute http(s) URL, or None; hrefs that do not depend on the page are cached."""
    href = href.strip()
    if not href or href.startswith(_SKIPPED_SCHEMES):
        return None
    cacheable = cache is not None and (href.startswith(("/", "http:", "https:")) and not href.startswith("//"))
    if cacheable and cache is not None and href in cache:
        return cache[href]
    absolute = _normalise(urljoin(base, href))
    if cacheable and cache is not None and len(cache) < MAX_KNOWN_URLS:
        cache[href] = absolute
    return absolute


def _normalise(url: str) -> str | None:
    """Scheme and host in lower case, default port shown, no fragment, '/' for an empty path; None if not http(s)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        return None
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != (443 if scheme == "https" else 80):
        shown = f"{shown}:{port}"
    return urlunsplit((scheme, shown, parts.path or "/", parts.query, ""))


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return ("", "", 0)
    scheme = parts.scheme.lower()
    return (scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80))


def _same_language(declared: str, wanted: str) -> bool:
    return declared == wanted or declared.startswith(wanted + "-")
