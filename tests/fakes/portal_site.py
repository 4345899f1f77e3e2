"""A portal-like site on loopback: pages, RSS, sitemap, robots.txt, public-service catalogue; it logs every request.

In tests: `Sites()` serves `Site`s on 127.0.0.1 from a background thread with its own event loop (the probe runs in
the test's loop). `portal(...)` builds the pages of a Vietnamese provincial portal (menu, search box, header clock,
news with dates, legal documents, contacts, optionally an English page); other builders add what a test needs.
As a script (the benchmark's target in its own process, so its CPU is not counted as the prober's):
`cd tests && python -m fakes.portal_site --port P --pages 50`; prints "ready" when listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import html
import json
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from aiohttp import web

VIETNAM = timezone(timedelta(hours=7))
HTML = "text/html; charset=utf-8"
ROBOTS = "User-agent: *\nDisallow: /noi-bo/\n\nSitemap: /sitemap.xml\n"
MENU = (
    ("/", "Trang chủ"),
    ("/gioi-thieu/co-cau-to-chuc", "Cơ cấu tổ chức"),
    ("/tin-tuc", "Tin tức - Sự kiện"),
    ("/van-ban", "Văn bản chỉ đạo điều hành"),
    ("/thu-tuc-hanh-chinh", "Thủ tục hành chính"),
    ("/dich-vu-cong", "Dịch vụ công trực tuyến"),
    ("/lien-he", "Liên hệ"),
)
SERVICE_LEVELS = ("2", "3", "4")


@dataclass
class Resource:
    """One answer of the site."""

    body: bytes
    status: int = 200
    content_type: str = HTML
    delay: float = 0.0
    location: str = ""
    """A Location header (for redirects)."""
    gzip: bool = False
    """Send the body gzip-compressed (Content-Encoding: gzip)."""


@dataclass
class Site:
    """Resources by path (with query); `endless` serves /a/N linking to /a/N+1 for every N."""

    resources: dict[str, Resource] = field(default_factory=dict)
    endless: bool = False
    url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)
    """(path with query, Host header) of every request, in order."""
    started: list[float] = field(default_factory=list)
    """time.monotonic() at each request's arrival."""
    in_flight: int = 0
    most_in_flight: int = 0

    def paths(self) -> list[str]:
        """The paths requested, in order."""
        return [path for path, _ in self.requests]


class Sites:
    """Sites on 127.0.0.1 served by one background thread; close() stops them all."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="portal-fakes", daemon=True)
        self._thread.start()
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def serve(self, site: Site, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> Site:
        """Start serving `site` (over TLS if given a server context); sets and returns it with its url."""
        return asyncio.run_coroutine_threadsafe(self._start(site, host, port, tls), self.loop).result(timeout=20)

    def close(self) -> None:
        """Stop every site and the thread."""
        for closer in reversed(self._closers):
            asyncio.run_coroutine_threadsafe(closer(), self.loop).result(timeout=20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    async def _start(self, site: Site, host: str, port: int, tls: ssl.SSLContext | None) -> Site:
        runner = web.AppRunner(app(site), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, host, port, ssl_context=tls).start()
        site.url = f"{'https' if tls else 'http'}://{host}:{runner.addresses[0][1]}"
        self._closers.append(runner.cleanup)
        return site


def app(site: Site) -> web.Application:
    """The aiohttp application answering for `site`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        site.requests.append((path, request.headers.get("Host", "")))
        site.started.append(time.monotonic())
        resource = site.resources.get(path)
        if resource is None and site.endless and path.startswith("/a/") and path[3:].isdigit():
            number = int(path[3:])
            resource = Resource(f'<html><body><a href="/a/{number + 1}">Trang tiếp theo</a></body></html>'.encode())
        if resource is None:
            resource = Resource(page("Không tìm thấy", "<p>Trang không tồn tại</p>"), status=404)
        site.in_flight += 1
        site.most_in_flight = max(site.most_in_flight, site.in_flight)
        try:
            if resource.delay:
                await asyncio.sleep(resource.delay)
        finally:
            site.in_flight -= 1
        headers = {"Content-Type": resource.content_type}
        if resource.location:
            headers["Location"] = resource.location
        body = resource.body
        if resource.gzip:
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        return web.Response(body=body, status=resource.status, headers=headers)

    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", handle)
    return application


# ---------------------------------------------------------------------------------------------- builders


def today() -> date:
    """Today in Vietnam, as the portal's header clock shows it."""
    return datetime.now(VIETNAM).date()


def dmy(day: date) -> str:
    """dd/mm/yyyy, as Vietnamese portals write dates."""
    return day.strftime("%d/%m/%Y")


def page(title: str, content: str, *, english_link: bool = True, lang: str = "vi", clock: date | None = None,
         extra_menu: Iterable[tuple[str, str]] = ()) -> bytes:
    """A portal page: header clock, search form, menu (with English unless told), the content, a footer."""
    menu = [*MENU, *extra_menu] + ([("/en/", "English")] if english_link else [])
    links = "\n".join(f'<li><a href="{href}">{html.escape(text)}</a></li>' for href, text in menu)
    shown = clock or today()
    return f"""<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="alternate" type="application/rss+xml" title="Tin tức" href="/rss/tin-tuc.rss">
<style>.clock {{ color: #900 }}</style><script>var clock = "{dmy(shown)}";</script></head>
<body><header><div class="clock">Thứ {shown.isoweekday() + 1}, {dmy(shown)}</div>
<form class="search" action="/tim-kiem" method="get"><input type="text" name="tukhoa" placeholder="Tìm kiếm...">
<button type="submit">Tìm</button></form>
<nav><ul>{links}</ul></nav></header>
<main><h1>{html.escape(title)}</h1>{content}</main>
<footer><p>Cổng thông tin điện tử UBND tỉnh. Địa chỉ: 62 Hùng Vương, Tam Kỳ. Điện thoại: 0235 3810 000</p></footer>
</body></html>""".encode()


def portal(*, news_days: list[date], english: bool = True, external: Iterable[str] = (),
           broken: bool = True, robots: str | None = ROBOTS) -> dict[str, Resource]:
    """A provincial portal; news articles dated `news_days` (also in RSS and the sitemap), newest first."""
    articles = [(f"/tin-tuc/bai-{index}.html", day) for index, day in enumerate(news_days, start=1)]
    news_list = "".join(f'<li><a href="{href}">Tin hoạt động số {index}</a> <span>({dmy(day)})</span></li>'
                        for index, (href, day) in enumerate(articles, start=1))
    outside = "".join(f'<li><a href="{url}">Liên kết ngoài {index}</a></li>' for index, url in enumerate(external))
    odd = ('<li><a href="/khong-ton-tai">Trang đã xoá</a></li><li><a href="/loi-may-chu">Trang lỗi</a></li>'
           if broken else "")
    home = (f'<ul class="news">{news_list}</ul><ul>{outside}{odd}'
            '<li><a href="/noi-bo/tai-lieu">Tài liệu nội bộ</a></li>'
            '<li><a href="/files/quyet-dinh.pdf">Quyết định (PDF)</a></li>'
            '<li><a href="mailto:vanphong@example.invalid">Thư</a></li><li><a href="#top">Lên đầu</a></li></ul>')
    resources = {
        "/": Resource(page("Cổng thông tin điện tử", home, english_link=english)),
        "/gioi-thieu/co-cau-to-chuc": Resource(page("Cơ cấu tổ chức", "<p>Sơ đồ tổ chức của UBND tỉnh</p>",
                                                    english_link=english)),
        "/tin-tuc": Resource(page("Tin tức", f"<ul>{news_list}</ul>", english_link=english)),
        "/van-ban": Resource(page("Văn bản", "<table><tr><th>Số ký hiệu</th><th>Trích yếu</th></tr>"
                                              "<tr><td>12/QĐ-UBND</td><td>Về việc ...</td></tr></table>",
                                  english_link=english)),
        "/thu-tuc-hanh-chinh": Resource(page("Thủ tục hành chính", "<p>Danh sách thủ tục</p>",
                                             english_link=english)),
        "/dich-vu-cong": Resource(page("Dịch vụ công", "<p>Cổng dịch vụ công của tỉnh</p>", english_link=english)),
        "/lien-he": Resource(page("Liên hệ", "<p>Văn phòng UBND tỉnh</p>", english_link=english)),
        "/noi-bo/tai-lieu": Resource(page("Nội bộ", "<p>Không dành cho máy tìm kiếm</p>", english_link=english)),
        "/loi-may-chu": Resource(b"<h1>500</h1>", status=500),
        "/files/quyet-dinh.pdf": Resource(b"%PDF-1.4", content_type="application/pdf"),
        "/rss/tin-tuc.rss": Resource(rss(news_days), content_type="application/rss+xml; charset=utf-8"),
        "/sitemap.xml": Resource(sitemap([href for href, _ in articles], news_days[:1]),
                                 content_type="application/xml"),
    }
    if english:
        resources["/en/"] = Resource(page("Quang Nam Provincial Portal", "<p>Organisation and contacts</p>",
                                          lang="en"))
    for href, day in articles:
        resources[href] = Resource(page("Tin hoạt động", f"<p>Ngày đăng: {dmy(day)}</p><p>Nội dung tin.</p>",
                                        english_link=english))
    if robots is not None:
        resources["/robots.txt"] = Resource(robots.encode(), content_type="text/plain")
    return resources


def rss(days: list[date]) -> bytes:
    """An RSS 2.0 feed with one item per day (08:00 in Vietnam); its channel's lastBuildDate is now (ignored)."""
    items = "".join(f"<item><title>Tin {index}</title><link>/tin-tuc/bai-{index}.html</link>"
                    f"<pubDate>{rfc822(datetime(day.year, day.month, day.day, 8, tzinfo=VIETNAM))}</pubDate></item>"
                    for index, day in enumerate(days, start=1))
    now = rfc822(datetime.now(VIETNAM))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Tin tức</title>'
            f"<lastBuildDate>{now}</lastBuildDate>{items}</channel></rss>").encode()


def rfc822(moment: datetime) -> str:
    """RFC 822 date as RSS writes it, without locale."""
    names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    return (f"{names[moment.weekday()]}, {moment.day:02d} {months[moment.month - 1]} {moment.year} "
            f"{moment:%H:%M:%S} {moment:%z}")


def sitemap(paths: list[str], lastmod: list[date]) -> bytes:
    """A sitemap whose entries all carry the given lastmod (or none)."""
    stamp = f"<lastmod>{lastmod[0].isoformat()}</lastmod>" if lastmod else ""
    urls = "".join(f"<url><loc>{path}</loc>{stamp}</url>" for path in paths)
    return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode()


def services(count: int) -> list[dict[str, str]]:
    """A deterministic catalogue: each service has a level (2, 3, 4) and, from level 3, toàn trình or một phần."""
    catalogue = []
    for index in range(count):
        level = SERVICE_LEVELS[(index * 7) % 3]
        mode = "" if level == "2" else ("toan_trinh" if (index * 5) % 4 == 0 else "mot_phan")
        catalogue.append({"code": f"1.{index:06d}", "name": f"Thủ tục số {index}", "level": level, "mode": mode})
    return catalogue


def catalogue_json(catalogue: list[dict[str, str]]) -> bytes:
    """The statistics API of a public-service portal: counts per level and per Decree 42 mode."""
    levels = Counter(service["level"] for service in catalogue)
    modes = Counter(service["mode"] for service in catalogue if service["mode"])
    return json.dumps({"data": {"muc_do": {f"muc_do_{level}": levels[level] for level in SERVICE_LEVELS},
                                "toan_trinh": modes["toan_trinh"], "mot_phan": str(modes["mot_phan"])}}).encode()


def catalogue_html(catalogue: list[dict[str, str]]) -> bytes:
    """The catalogue as an HTML table: one row per service with its level and mode."""
    labels = {"toan_trinh": "Toàn trình", "mot_phan": "Một phần", "": ""}
    rows = "".join(f'<tr><td>{s["code"]}</td><td>{s["name"]}</td><td class="muc-do">Mức độ {s["level"]}</td>'
                   f'<td class="hinh-thuc">{labels[s["mode"]]}</td></tr>' for s in catalogue)
    return page("Danh mục dịch vụ công", f"<table>{rows}</table>")


def bench_site(pages: int) -> dict[str, Resource]:
    """A portal of exactly `pages` HTML pages (~50 KB, ~200 links each), all linked from every page."""
    day = today()
    fixed = [href for href, _ in MENU] + ["/en/"]
    paths = fixed + [f"/tin-tuc/bai-{index}.html" for index in range(1, pages - len(fixed) + 1)]
    articles = paths[len(fixed):]
    news = "".join(f'<li class="item"><a href="{articles[index % len(articles)]}" title="Tin số {index}">'
                   f"Tin hoạt động số {index} của UBND tỉnh Quảng Nam trong tháng</a> "
                   f'<span class="date">({dmy(day - timedelta(days=index % 30))})</span></li>\n'
                   for index in range(190))
    text = "<p>" + "Nội dung bài viết về cải cách hành chính và chuyển đổi số. " * 250 + "</p>"
    resources = {path: Resource(page(f"Trang {path}", f"<ul>{news}</ul>{text}")) for path in paths}
    resources["/robots.txt"] = Resource(ROBOTS.encode(), content_type="text/plain")
    resources["/rss/tin-tuc.rss"] = Resource(rss([day - timedelta(days=1)]), content_type="application/rss+xml")
    resources["/sitemap.xml"] = Resource(sitemap(paths, [day - timedelta(days=1)]), content_type="application/xml")
    return resources


def main(argv: list[str] | None = None) -> int:
    """Serve bench_site(--pages) on 127.0.0.1:--port until terminated."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pages", type=int, default=50)
    args = parser.parse_args(argv)
    site = Site(bench_site(args.pages))

    async def serve() -> None:
        runner = web.AppRunner(app(site), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())

