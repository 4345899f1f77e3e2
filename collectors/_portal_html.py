"""One HTML page read with the standard library's tolerant parser: links, feeds, search forms, language, text."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

MAX_LINK_TEXT = 200
MAX_LINKS = 5000
_SEARCH_NAMES = frozenset({"q", "s", "k", "key", "keyword", "keywords", "query", "search", "tukhoa", "tu_khoa",
                           "tu-khoa", "timkiem", "tim_kiem", "tim-kiem", "searchtext", "txtsearch", "txtkeyword"})
_TEXT_INPUTS = frozenset({"", "text", "search"})
_SKIPPED = frozenset({"script", "style", "template"})
_FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml"})
_TIME_METAS = frozenset({"article:modified_time", "article:published_time", "og:updated_time", "dc.date.modified",
                         "dc.date", "date", "last-modified"})


@dataclass(slots=True)
class Link:
    """A link on the page: href as written, its text (with images' alt, title) and hreflang."""

    href: str
    text: str
    hreflang: str = ""


@dataclass(slots=True)
class Page:
    """What the crawler needs from one page."""

    links: list[Link] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)
    feeds: list[str] = field(default_factory=list)
    lang: str = ""
    search_form: bool = False
    text: str = ""
    times: list[str] = field(default_factory=list)
    """Machine-readable times: <time datetime> and article:modified_time-like <meta> contents."""
    base: str = ""


def parse_page(html: str) -> Page:
    """Parse an HTML document (malformed or cut short: whatever could be read)."""
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser.finish()


class _Parser(HTMLParser):
    """Collects links, text and forms in one pass; never raises on bad markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._text: list[str] = []
        self._anchor: Link | None = None
        self._anchor_text: list[str] = []
        self._skip = 0
        self._form_depth = 0
        self._form_search = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skip += 1
            return
        page = self.page
        if tag == "a" or tag == "area":
            self._close_anchor()
            values = dict(attrs)
            href = values.get("href")
            if href is not None and len(page.links) < MAX_LINKS:
                link = Link(href, "", (values.get("hreflang") or "").lower())
                label = values.get("title") or values.get("aria-label") or values.get("alt")
                if tag == "a":
                    self._anchor, self._anchor_text = link, [label] if label else []
                else:
                    link.text = label or ""
                    page.links.append(link)
        elif tag == "img":
            if self._anchor is not None:
                alt = dict(attrs).get("alt")
                if alt:
                    self._anchor_text.append(alt)
        elif tag == "input":
            if self._form_depth and not self._form_search:
                self._form_search = _is_search_input(dict(attrs))
        elif tag == "form":
            values = dict(attrs)
            self._form_depth += 1
            action = (values.get("action") or "").lower()
            if values.get("role") == "search" or "search" in action or "tim-kiem" in action or "timkiem" in action:
                self._form_search = True
        elif tag == "link":
            self._link_tag(dict(attrs))
        elif tag == "meta":
            values = dict(attrs)
            name = (values.get("property") or values.get("name") or values.get("itemprop") or "").lower()
            content = values.get("content")
            if content and name in _TIME_METAS:
                page.times.append(content)
        elif tag == "time":
            stamp = dict(attrs).get("datetime")
            if stamp:
                page.times.append(stamp)
        elif tag == "html":
            page.lang = (dict(attrs).get("lang") or "").lower()
        elif tag == "frame" or tag == "iframe":
            src = dict(attrs).get("src")
            if src:
                page.frames.append(src)
        elif tag == "base":
            href = dict(attrs).get("href")
            if href and not page.base:
                page.base = href

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skip = max(0, self._skip - 1)
        elif tag == "a":
            self._close_anchor()
        elif tag == "form" and self._form_depth:
            self._form_depth -= 1
            if self._form_search:
                self.page.search_form = True
            self._form_search = False

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self._text.append(data)
        if self._anchor is not None:
            self._anchor_text.append(data)

    def finish(self) -> Page:
        self._close_anchor()
        if self._form_depth and self._form_search:  # a form never closed
            self.page.search_form = True
        self.page.text = " ".join(self._text)
        return self.page

    def _close_anchor(self) -> None:
        if self._anchor is not None:
            self._anchor.text = " ".join(self._anchor_text)[:MAX_LINK_TEXT]
            self.page.links.append(self._anchor)
            self._anchor = None

    def _link_tag(self, values: dict[str, str | None]) -> None:
        rel = (values.get("rel") or "").lower().split()
        href = values.get("href")
        if not href or "alternate" not in rel:
            return
        kind = (values.get("type") or "").lower()
        if kind in _FEED_TYPES:
            self.page.feeds.append(href)
        hreflang = (values.get("hreflang") or "").lower()
        if hreflang and len(self.page.links) < MAX_LINKS:
            self.page.links.append(Link(href, "", hreflang))


def _is_search_input(values: dict[str, str | None]) -> bool:
    kind = (values.get("type") or "").lower()
    if kind == "search":
        return True
    if kind not in _TEXT_INPUTS:
        return False
    for key in ("name", "id"):
        value = (values.get(key) or "").lower()
        if value in _SEARCH_NAMES or "search" in value or "keyword" in value:
            return True
    placeholder = (values.get("placeholder") or "").lower()
    return "tìm" in placeholder or "search" in placeholder
