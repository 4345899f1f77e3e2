"""The portal kind's pieces on their own: accent folding, robots.txt rules, dates, the HTML reader, item defaults."""

from __future__ import annotations

import random
import unicodedata
from datetime import UTC, datetime, timedelta, timezone

import pytest

from collectors._portal_crawl import Crawl, newest_update
from collectors._portal_dates import FIRST_YEAR, feed_times, iso_time, page_days, rfc822_time, sitemap_times
from collectors._portal_html import parse_page
from collectors._portal_items import default_items, fold
from collectors._portal_robots import parse

VN = timezone(timedelta(hours=7))
PIECES = ("<", ">", "</", "/>", "<a href=", '"', "'", "=", "&", "&#", ";", "<!--", "-->", "<script>", "</script>",
          "<form>", "<input type=search>", "\n", " ", "Đ", "ệ", "\u0300", "\x00", "\ud800", "User-agent: *",
          "Disallow: ", "Allow: /", "*", "$", "#", ":", "%E1", "27/11/2026", "<![CDATA[", "]]>")


def garbage(seed: int) -> str:
    """Deterministic junk built from markup fragments, Vietnamese letters and random code points."""
    rng = random.Random(seed)
    return "".join(rng.choice(PIECES) if rng.random() < 0.6 else chr(rng.randrange(1, 0x3000))
                   for _ in range(rng.randrange(0, 400)))


def vn(*args: int) -> float:
    return datetime(*args, tzinfo=VN).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Văn bản pháp luật", "van ban phap luat"),
        ("THỦ TỤC HÀNH CHÍNH", "thu tuc hanh chinh"),
        ("Đường dây nóng  \n Đà Nẵng", "duong day nong da nang"),
        ("Cơ cấu tổ chức", "co cau to chuc"),
        ("Tiếng Anh (English)", "tieng anh (english)"),
        ("ưu đãi ỹ ỳ ỷ ỵ", "uu dai y y y y"),
    ],
)
def test_fold_strips_vietnamese_diacritics(text: str, folded: str) -> None:
    assert fold(text) == folded
    assert fold(unicodedata.normalize("NFD", text)) == folded  # decomposed text (some CMSs store it) too


def test_fold_never_fails_and_is_idempotent() -> None:
    for seed in range(300):
        once = fold(garbage(seed))
        assert fold(once) == once


def test_default_items_are_decree_42s() -> None:
    items = default_items()
    assert set(items) == {"van_ban", "thu_tuc_hanh_chinh", "dich_vu_cong", "co_cau_to_chuc", "lien_he", "english",
                          "tim_kiem", "tin_tuc"}
    assert "thu tuc hanh chinh" in items["thu_tuc_hanh_chinh"].link_texts  # stored folded
    assert items["tim_kiem"].search_form


ROBOTS = """\
# comment
User-agent: *
Disallow: /noi-bo/
Allow: /noi-bo/cong-khai
Disallow: /*.php$
Disallow: /tim-kiem?*sort=
Crawl-delay: 2

User-agent: other-bot
Disallow: /

Sitemap: https://portal.example/sitemap.xml
"""


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/", True),
        ("/noi-bo/", False),
        ("/noi-bo/tai-lieu", False),
        ("/noi-bo/cong-khai", True),  # the longer Allow wins
        ("/noi-bo/cong-khai/x", True),
        ("/index.php", False),
        ("/index.php?x=1", True),  # $ anchors the end
        ("/tim-kiem?q=a&sort=date", False),
        ("/tim-kiem?q=a", True),
        ("/robots.txt", True),
    ],
)
def test_robots_rules_for_star(path: str, allowed: bool) -> None:
    robots = parse(ROBOTS, "egov-agent")
    assert robots.allowed(path) is allowed
    assert robots.crawl_delay == 2
    assert robots.sitemaps == ("https://portal.example/sitemap.xml",)


def test_robots_own_group_wins_and_groups_merge() -> None:
    text = ("User-agent: *\nDisallow: /\n\nUser-agent: EGOV-AGENT\nDisallow: /a\n\nUser-agent: x\n"
            "User-agent: egov-agent\nDisallow: /b\n")
    robots = parse(text, "egov-agent")
    assert [robots.allowed(p) for p in ("/", "/a", "/b", "/c")] == [True, False, False, True]


def test_robots_equal_length_allow_wins_and_empty_disallow_allows() -> None:
    robots = parse("User-agent: *\nDisallow: /x\nAllow: /x\n", "egov-agent")
    assert robots.allowed("/x")
    assert parse("User-agent: *\nDisallow:\n", "egov-agent").allowed("/anything")
    assert parse("", "egov-agent").allowed("/anything")


def test_robots_percent_encoding_matches_either_way() -> None:
    robots = parse("User-agent: *\nDisallow: /tin-tức/\n", "egov-agent")
    assert not robots.allowed("/tin-t%E1%BB%A9c/bai-1")


def test_robots_never_fails_on_garbage() -> None:
    for seed in range(300):
        parse(garbage(seed), "egov-agent").allowed("/x")


def test_page_days_read_vietnamese_dates_only() -> None:
    text = ("Thứ Sáu, 27/11/2026 | cập nhật 5-6-2022 | 12.03.2023 | 31/02/2024 (no such day) | 01/13/2024 | "
            f"1/1/{FIRST_YEAR - 1} | 10/10/20255 | 2026/11/01 | 1.2.3.2020")
    assert page_days(text) == {vn(2026, 11, 27), vn(2022, 6, 5), vn(2023, 3, 12)}


def test_feed_times_take_item_dates_not_the_channels() -> None:
    rss = ("<rss><channel><lastBuildDate>Fri, 27 Nov 2026 08:00:00 +0700</lastBuildDate>"
           "<item><pubDate><![CDATA[Fri, 20 Nov 2026 08:00:00 +0700]]></pubDate></item>"
           "<item><pubDate>not a date</pubDate></item><item><dc:date>2026-11-19T10:00:00Z</dc:date></item>"
           "</channel></rss>")
    assert sorted(feed_times(rss)) == [datetime(2026, 11, 19, 10, tzinfo=UTC).timestamp(), vn(2026, 11, 20, 8)]
    atom = ("<feed><updated>2030-01-01T00:00:00Z</updated><entry><updated>2026-11-21T08:00:00+07:00</updated>"
            "<published>2026-11-01</published></entry></feed>")
    assert sorted(feed_times(atom)) == [vn(2026, 11, 1), vn(2026, 11, 21, 8)]


def test_sitemap_and_single_values() -> None:
    text = "<urlset><url><lastmod>2026-11-19</lastmod></url><url><lastmod>2026-11-18T10:00+07:00</lastmod></url>" \
           "<url><lastmod>hôm qua</lastmod></url></urlset>"
    assert sorted(sitemap_times(text)) == [vn(2026, 11, 18, 10), vn(2026, 11, 19)]
    assert iso_time("2026-11-20T01:00:00Z") == datetime(2026, 11, 20, 1, tzinfo=UTC).timestamp()
    assert iso_time("20/11/2026") is None
    assert rfc822_time("Fri, 20 Nov 2026 08:00:00 GMT") == datetime(2026, 11, 20, 8, tzinfo=UTC).timestamp()
    assert rfc822_time("garbage") is None


def test_newest_update_skips_the_header_clock_and_the_future() -> None:
    now = vn(2026, 11, 27, 10)
    crawl = Crawl()
    clock, news = vn(2026, 11, 27), vn(2026, 11, 20)
    crawl.page_days = [{clock, news}, {clock}, {clock, vn(2026, 12, 5)}]  # today on every page; a meeting next week
    assert newest_update(crawl, ("pages",), now) == (news, "pages")
    crawl.page_days = [{clock, news}, {news}, {news}]  # today on one page of three: real news
    assert newest_update(crawl, ("pages",), now) == (clock, "pages")
    crawl.times["feeds"] = [now + 7200, vn(2026, 11, 26, 8)]
    assert newest_update(crawl, ("feeds",), now) == (vn(2026, 11, 26, 8), "feeds")
    assert newest_update(Crawl(), ("feeds", "sitemaps", "pages"), now) is None


def test_parse_page_collects_what_the_crawler_needs() -> None:
    page = parse_page("""<!DOCTYPE html><html lang="VI"><head>
<link rel="alternate" type="application/rss+xml" href="/rss.xml"><link rel="alternate" hreflang="en" href="/en/">
<meta property="article:modified_time" content="2026-11-20T08:00:00+07:00"><base href="/goc/">
<script>var s = "<a href='/js'>";</script><style>a{}</style></head><body>
<a href="/van-ban" title="Văn bản">Văn <b>bản</b> pháp luật</a><a href="/en"><img src="flag.png" alt="English"></a>
<area href="/map" alt="Bản đồ"><iframe src="/khung"></iframe><time datetime="2026-11-21">21/11</time>
<form role="search"><input type="search" name="q"></form><p>Nội dung 20/11/2026</p></body></html>""")
    assert page.lang == "vi"
    assert [(link.href, " ".join(link.text.split()), link.hreflang) for link in page.links] == [
        ("/en/", "", "en"), ("/van-ban", "Văn bản Văn bản pháp luật", ""), ("/en", "English", ""),
        ("/map", "Bản đồ", "")]
    assert page.feeds == ["/rss.xml"]
    assert page.frames == ["/khung"]
    assert page.times == ["2026-11-20T08:00:00+07:00", "2026-11-21"]
    assert page.base == "/goc/"
    assert page.search_form
    assert "20/11/2026" in page.text
    assert "var s" not in page.text


@pytest.mark.parametrize(
    ("form", "search"),
    [
        ('<form action="/tim-kiem"><input type="text" name="x"></form>', True),
        ('<form><input type="text" name="tukhoa"></form>', True),
        ('<form><input name="keyword"></form>', True),
        ('<form><input type="text" placeholder="Tìm kiếm..."></form>', True),
        ('<form action="/dang-nhap"><input type="text" name="username"><input type="password"></form>', False),
        ('<input type="search" name="q">', False),  # not in a form
        ('<form><input type="search">', True),  # never closed
    ],
)
def test_search_forms(form: str, search: bool) -> None:
    assert parse_page(form).search_form is search


def test_parse_page_and_dates_never_fail() -> None:
    for seed in range(300):
        text = garbage(seed)
        parse_page(text)
        page_days(text)
        feed_times(text)
        sitemap_times(text)
