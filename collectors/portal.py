"""E-portal content and freshness (Decree 42/2022/NĐ-CP): a bounded, polite crawl of one portal's own pages."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from pydantic import Field, field_validator, model_validator

from agent.durations import Duration, format_duration
from agent.errors import Outcome
from collectors import _portal_catalogue, _resolve, _tls
from collectors._portal_dates import VIETNAM
from collectors._portal_items import ItemName, ItemRule, default_items
from collectors.base import CollectorSpec, MetricSpec, ProbeContext, Settings
from collectors.http import ByteSize, check_http_target

if TYPE_CHECKING:
    from collectors._portal_crawl import Crawl

UpdateSource = Literal["feeds", "sitemaps", "pages"]
SitePath = Annotated[str, Field(pattern=r"^/[^\s#]*$", max_length=1024)]
MAX_ITEMS = 32

METRICS = (
    MetricSpec("egov_portal_item_present", "gauge",
               "1 if the crawl found the item a portal must publish (Decree 42/2022/NĐ-CP), else 0.", ("item",)),
    MetricSpec("egov_portal_last_update_timestamp_seconds", "gauge",
               "Newest update the portal shows: RSS/Atom item dates, sitemap lastmod, dates on pages (Unix time)."),
    MetricSpec("egov_portal_broken_links", "gauge",
               "Links to the portal's own pages that answered 400 or more or failed, in this crawl."),
    MetricSpec("egov_portal_pages_crawled", "gauge", "Pages of the portal requested by this crawl."),
    MetricSpec("egov_portal_page_bytes", "gauge",
               "Total size of the HTML pages read by this crawl, decoded, in bytes."),
    MetricSpec("egov_portal_crawl_truncated", "gauge",
               "1 when a cap (pages, depth, page size, time) stopped the crawl before all it found, else 0."),
    MetricSpec("probe_http_status_code", "gauge", "Response HTTP status code of the home page"),
    *_resolve.METRICS,
    *_tls.METRICS,
)


class PortalSettings(Settings):
    """Settings of the portal kind: crawl caps and politeness, the items to find, where update dates come from."""

    max_pages: Annotated[int, Field(ge=1, le=1000)] = 50
    max_depth: Annotated[int, Field(ge=0, le=20)] = 3
    page_size_limit: ByteSize = 2 << 20
    max_in_flight: Annotated[int, Field(ge=1, le=8)] = 2
    min_interval: Duration = 0.1
    respect_robots_txt: bool = True
    items: dict[ItemName, ItemRule] = Field(default_factory=dict)
    default_items: bool = True
    required: tuple[ItemName, ...] | None = None
    feeds: tuple[SitePath, ...] = ()
    sitemaps: tuple[SitePath, ...] = ("/sitemap.xml",)
    update_sources: Annotated[tuple[UpdateSource, ...], Field(min_length=1)] = ("feeds", "sitemaps", "pages")
    max_update_age: Duration | None = None
    tls_config: _tls.TlsConfig | None = None
    preferred_ip_protocol: _resolve.IpProtocol = "ip4"
    ip_protocol_fallback: bool = True

    @field_validator("min_interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value > 60:
            raise ValueError("min_interval above 60s leaves no crawl to speak of")
        return value

    @model_validator(mode="after")
    def _items_known(self) -> PortalSettings:
        names = self.all_items()
        if not names:
            raise ValueError("no items to look for: keep default_items or give items")
        if len(names) > MAX_ITEMS:
            raise ValueError(f"at most {MAX_ITEMS} items")
        unknown = [name for name in self.required or () if name not in names]
        if unknown:
            raise ValueError(f"required lists unknown items: {', '.join(unknown)} (known: {', '.join(names)})")
        return self

    def all_items(self) -> dict[str, ItemRule]:
        """The items looked for: the defaults (unless default_items is false) with `items` added or replacing."""
        return {**(default_items() if self.default_items else {}), **self.items}

    def required_items(self) -> tuple[str, ...]:
        """Items whose absence fails the run: `required`, or every item."""
        return tuple(self.all_items()) if self.required is None else self.required


async def probe_portal(ctx: ProbeContext, settings: PortalSettings) -> bool:
    """Crawl the portal from the target (its home page) and check what it publishes and how fresh it is."""
    from collectors import _portal_crawl  # loads aiohttp's client: only when a portal check runs

    crawler = _portal_crawl.Crawler(ctx, settings)
    ok = await crawler.run()
    crawl = crawler.result
    newest = _portal_crawl.newest_update(crawl, settings.update_sources)
    _record(ctx, settings, crawl, newest)
    if not ok:
        return False
    cut = f" (crawl cut short: {', '.join(sorted(crawl.truncated))})" if crawl.truncated else ""
    missing = [name for name in settings.required_items() if name not in crawl.found]
    if missing:
        return ctx.fail(Outcome.MISMATCH, "not found on %d pages: %s%s", crawl.pages, ", ".join(missing), cut)
    if settings.max_update_age is not None:
        if newest is None:
            return ctx.fail(Outcome.MISMATCH, "no update date found (sources: %s)%s",
                            ", ".join(settings.update_sources), cut)
        age = time.time() - newest[0]
        if age > settings.max_update_age:
            return ctx.fail(Outcome.MISMATCH, "last update %s (from %s) is %.1f days old, more than max_update_age %s",
                            _day(newest[0]), newest[1], age / 86400, format_duration(settings.max_update_age))
    return True


def check_portal_target(target: str, settings: PortalSettings) -> None:
    """The target (the home page) must be an absolute http(s) URL without credentials, as for http."""
    check_http_target(target, cast(Any, settings))


def check_portal_module(settings: PortalSettings, timeout: float) -> None:
    """The module's timeout must leave room for more than the home page at min_interval."""
    if settings.min_interval * 2 >= timeout:
        raise ValueError(f"min_interval {format_duration(settings.min_interval)} leaves no time to crawl within the "
                         f"timeout {format_duration(timeout)}")


SPEC = CollectorSpec(
    kind="portal",
    settings=PortalSettings,
    probe=probe_portal,
    metrics=METRICS,
    check_target=check_portal_target,
    check_module=check_portal_module,
)
PUBLICSERVICE_SPEC = _portal_catalogue.SPEC


# ---------------------------------------------------------------------------------------------- private


def _record(ctx: ProbeContext, settings: PortalSettings, crawl: Crawl, newest: tuple[float, str] | None) -> None:
    add = ctx.sink.add
    for name in settings.all_items():
        add("egov_portal_item_present", 1 if name in crawl.found else 0, name)
    if newest is not None:
        add("egov_portal_last_update_timestamp_seconds", newest[0])
    add("egov_portal_broken_links", crawl.broken)
    add("egov_portal_pages_crawled", crawl.pages)
    add("egov_portal_page_bytes", crawl.page_bytes)
    add("egov_portal_crawl_truncated", 1 if crawl.truncated else 0)
    add("probe_http_status_code", crawl.home_status)
    if crawl.home_ssl is not None:
        _tls.record(ctx, crawl.home_ssl)
    for name, where in crawl.found.items():
        ctx.log("item %s found at %s", name, where)
    if newest is not None:
        ctx.log("newest update %s (from %s)", _day(newest[0]), newest[1])
    ctx.log("%d pages (%d HTML, %d bytes), %d broken links, %d disallowed by robots.txt%s", crawl.pages,
            crawl.html_pages, crawl.page_bytes, crawl.broken, crawl.disallowed,
            f"; cut short by {', '.join(sorted(crawl.truncated))}" if crawl.truncated else "")


def _day(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, VIETNAM).strftime("%Y-%m-%d %H:%M %z")
