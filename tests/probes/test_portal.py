"""The portal kind against a portal-like site on loopback: items, freshness, broken links, caps, robots.txt."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from fakes.portal_site import MENU, VIETNAM, Resource, Site, Sites, page, portal, today
from pydantic import TypeAdapter
from testlib import UNRESOLVABLE_HOST, free_port

from agent.config import module_model
from agent.errors import Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import COLLECTORS

SPEC = COLLECTORS["portal"]
ITEMS = ("van_ban", "thu_tuc_hanh_chinh", "dich_vu_cong", "co_cau_to_chuc", "lien_he", "english", "tim_kiem",
         "tin_tuc")
FAST = {"min_interval": "1ms"}


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    running = Sites()
    yield running
    running.close()


def settings(**portal_settings: Any) -> Any:
    """The module's portal settings as the config loader builds them."""
    module = TypeAdapter(module_model()).validate_python({"kind": "portal", "timeout": "10s",
                                                          "portal": portal_settings})
    return module.portal


async def probe(url: str, seconds: float = 10.0, **portal_settings: Any) -> tuple[ProbeResult, dict[str, float]]:
    job = Job("portal", url, "portal_content", "portal", 60.0, seconds, SPEC, settings(**{**FAST, **portal_settings}))
    result = await run_job(job)
    return result, {s.name + ("{" + ",".join(v for _, v in s.labels) + "}" if s.labels else ""): s.value
                    for s in result.samples}


def at_eight(day: date) -> float:
    return datetime(day.year, day.month, day.day, 8, tzinfo=VIETNAM).timestamp()


def midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=VIETNAM).timestamp()


def recent_days() -> list[date]:
    day = today()
    return [day - timedelta(days=1), day - timedelta(days=4), day - timedelta(days=9)]


async def test_a_full_portal_has_every_item_and_reports_the_crawl(sites: Sites) -> None:
    outside = sites.serve(Site())
    days = recent_days()
    site = sites.serve(Site(portal(news_days=days, external=[outside.url + "/dich-vu-cong/",
                                                             f"http://{UNRESOLVABLE_HOST}/"])))
    result, got = await probe(site.url + "/")
    assert result.success, result.error
    assert {item: got[f"egov_portal_item_present{{{item}}}"] for item in ITEMS} == dict.fromkeys(ITEMS, 1.0)
    articles = [f"/tin-tuc/bai-{n}.html" for n in range(1, len(days) + 1)]
    pages = ["/", *(href for href, _ in MENU if href != "/"), "/en/", *articles, "/khong-ton-tai", "/loi-may-chu"]
    assert got["egov_portal_pages_crawled"] == len(pages)
    assert got["egov_portal_broken_links"] == 2  # /khong-ton-tai answers 404, /loi-may-chu 500
    html_bytes = sum(len(site.resources[path].body) for path in pages
                     if path in site.resources and site.resources[path].status == 200)
    assert got["egov_portal_page_bytes"] == html_bytes
    assert got["egov_portal_crawl_truncated"] == 0
    assert got["egov_portal_last_update_timestamp_seconds"] == at_eight(max(days))  # the newest RSS item
    assert got["probe_http_status_code"] == 200
    assert sorted(site.paths()) == sorted([*pages, "/robots.txt", "/sitemap.xml", "/rss/tin-tuc.rss"])
    assert {host for _, host in site.requests} == {site.url.removeprefix("http://")}
    assert outside.requests == []  # links to other sites are matched, never fetched


async def test_robots_txt_disallow_is_honoured_and_can_be_turned_off(sites: Sites) -> None:
    site = sites.serve(Site(portal(news_days=recent_days())))
    result, _ = await probe(site.url + "/")
    assert result.success, result.error
    assert "/noi-bo/tai-lieu" not in site.paths()
    site.requests.clear()
    result, _ = await probe(site.url + "/", respect_robots_txt=False)
    assert "/noi-bo/tai-lieu" in site.paths()
    assert "/robots.txt" not in site.paths()


async def test_robots_txt_group_for_egov_agent_wins_over_star(sites: Sites) -> None:
    robots = "User-agent: *\nDisallow: /\n\nUser-agent: Googlebot\nUser-agent: EGOV-Agent\nDisallow: /van-ban\n"
    site = sites.serve(Site(portal(news_days=recent_days(), robots=robots)))
    result, got = await probe(site.url + "/")
    assert "/van-ban" not in site.paths()
    assert "/lien-he" in site.paths()
    assert got["egov_portal_item_present{van_ban}"] == 1  # the menu link is enough
    assert result.success, result.error


async def test_a_robots_txt_server_error_limits_the_crawl_to_the_home_page(sites: Sites) -> None:
    site = sites.serve(Site(portal(news_days=recent_days(), robots=None)))
    site.resources["/robots.txt"] = Resource(b"busy", status=503, content_type="text/plain")
    result, got = await probe(site.url + "/")
    assert site.paths() == ["/", "/robots.txt"]
    assert got["egov_portal_pages_crawled"] == 1
    assert result.success, result.error  # the home page's menu links name every item


async def test_a_portal_without_an_english_page_fails_unless_english_is_not_required(sites: Sites) -> None:
    site = sites.serve(Site(portal(news_days=recent_days(), english=False)))
    result, got = await probe(site.url + "/")
    assert result.outcome is Outcome.MISMATCH
    assert result.error == f"not found on {int(got['egov_portal_pages_crawled'])} pages: english"
    assert got["egov_portal_item_present{english}"] == 0
    assert all(got[f"egov_portal_item_present{{{item}}}"] == 1 for item in ITEMS if item != "english")
    result, _ = await probe(site.url + "/", required=[item for item in ITEMS if item != "english"])
    assert result.success, result.error


async def test_stale_news_shows_in_the_update_time_and_fails_max_update_age(sites: Sites) -> None:
    day = today()
    days = [day - timedelta(days=400), day - timedelta(days=420)]
    site = sites.serve(Site(portal(news_days=days)))
    result, got = await probe(site.url + "/")
    assert result.success, result.error  # without max_update_age, staleness is for the alert rules
    # The header clock shows today on every page: it is not news.
    assert got["egov_portal_last_update_timestamp_seconds"] == at_eight(days[0])
    result, got = await probe(site.url + "/", max_update_age="30d")
    assert result.outcome is Outcome.MISMATCH
    assert "days old, more than max_update_age 30d" in result.error
    result, _ = await probe(site.url + "/", max_update_age="500d")
    assert result.success, result.error


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        pytest.param(["pages"], lambda days: midnight(days[0]), id="pages: article dates, not the header clock"),
        pytest.param(["sitemaps"], lambda days: midnight(days[0]), id="sitemap lastmod"),
        pytest.param(["feeds"], lambda days: at_eight(days[0]), id="RSS pubDate"),
    ],
)
async def test_each_update_source(sites: Sites, sources: list[str], expected: Any) -> None:
    day = today()
    days = [day - timedelta(days=2), day - timedelta(days=30)]
    site = sites.serve(Site(portal(news_days=days)))
    _, got = await probe(site.url + "/", update_sources=sources)
    assert got["egov_portal_last_update_timestamp_seconds"] == expected(days)


async def test_no_date_anywhere_leaves_the_gauge_out_and_fails_max_update_age(sites: Sites) -> None:
    site = sites.serve(Site({"/": Resource(page("Trang chủ", "<p>Không có ngày tháng</p>", clock=date(1900, 1, 1)))}))
    result, got = await probe(site.url + "/", max_update_age="7d", required=["van_ban"])
    assert "egov_portal_last_update_timestamp_seconds" not in got
    assert result.outcome is Outcome.MISMATCH
    assert result.error.startswith("no update date found")


async def test_a_portal_linking_to_itself_forever_is_stopped_by_the_page_cap(sites: Sites) -> None:
    site = sites.serve(Site({"/": Resource('<a href="/a/1">Bắt đầu</a>'.encode())}, endless=True))
    result, got = await probe(site.url + "/", max_pages=20, max_depth=20, respect_robots_txt=False, sitemaps=[])
    assert got["egov_portal_pages_crawled"] == 20
    assert got["egov_portal_crawl_truncated"] == 1
    assert [path for path in site.paths() if path.startswith("/a/")] == [f"/a/{n}" for n in range(1, 20)]
    assert result.outcome is Outcome.MISMATCH  # the bare pages lack most items; the run still ends cleanly


async def test_the_depth_cap_stops_it_too(sites: Sites) -> None:
    site = sites.serve(Site({"/": Resource('<a href="/a/1">Bắt đầu</a>'.encode())}, endless=True))
    _, got = await probe(site.url + "/", max_depth=3, respect_robots_txt=False, sitemaps=[])
    assert [path for path in site.paths() if path.startswith("/a/")] == ["/a/1", "/a/2", "/a/3"]
    assert got["egov_portal_crawl_truncated"] == 1


async def test_malformed_html_is_read_as_far_as_it_goes(sites: Sites) -> None:
    broken = (b"<html><head><title>Trang <b>ch\xe1\xbb\xa7</title><body><div <p>>><a href=/van-ban>V\xc4\x83n b\xe1"
              b"\xba\xa3n<a href='/lien-he'>Li\xc3\xaan h\xe1\xbb\x87</a></i></b><table><tr><td>\xff\xfe\x00\x01"
              b"<form><input name=tukhoa type=text><a href=\"/tin-tuc>Tin t\xe1\xbb\xa9c</a><a href=/x?a=1&b=<2>"
              b"&#xD800;&#99999999;<!-- unterminated comment <a href=/khong-bao-gio>x</a>"
              b"<script>document.write('<a href=\"/js\">')</script <a href=\"/cuoi\">Cu\xe1\xbb\x91i</a>")
    site = sites.serve(Site({"/": Resource(broken, content_type="text/html; charset=khong-co-bang-ma-nay"),
                             "/van-ban": Resource(b"<<<>>><a href='/' <a href=/van-ban>\xe0\xa4", status=200)}))
    result, got = await probe(site.url + "/", respect_robots_txt=False, sitemaps=[])
    assert result.outcome is Outcome.MISMATCH, result.error
    assert got["egov_portal_item_present{van_ban}"] == 1
    assert got["egov_portal_item_present{lien_he}"] == 1
    assert got["egov_portal_item_present{tim_kiem}"] == 1
    assert got["egov_portal_item_present{english}"] == 0
    assert "/khong-bao-gio" not in site.paths()  # inside a comment
    assert "/js" not in site.paths()  # inside a script


async def test_a_page_above_page_size_limit_is_read_in_part(sites: Sites) -> None:
    """The page is parsed up to the cap, whatever the chunks the server's answer arrives in: the menu before the
    filler counts, the English link after it does not."""
    filler = "<p>" + "Nội dung rất dài. " * 20000 + "</p>"
    body = page("Trang chủ", filler + '<a href="/en/">English</a>', english_link=False)
    site = sites.serve(Site({"/": Resource(body)}))
    result, got = await probe(site.url + "/", page_size_limit="64KB", required=[], sitemaps=[], max_depth=0)
    assert result.success, result.error
    assert got["egov_portal_crawl_truncated"] == 1
    assert got["egov_portal_page_bytes"] == 64 * 1024
    assert got["egov_portal_item_present{lien_he}"] == 1  # in the menu, within the cap
    assert got["egov_portal_item_present{english}"] == 0  # past the cap


async def test_compressed_pages_are_read_and_weighed_decoded(sites: Sites) -> None:
    site = sites.serve(Site(portal(news_days=recent_days())))
    for resource in site.resources.values():
        resource.gzip = True
    result, got = await probe(site.url + "/", max_depth=0, sitemaps=[], update_sources=["feeds"])
    assert result.success, result.error
    assert got["egov_portal_page_bytes"] == len(site.resources["/"].body)
    assert got["egov_portal_last_update_timestamp_seconds"] == at_eight(recent_days()[0])  # the gzipped RSS


@pytest.mark.slow
async def test_requests_are_polite(sites: Sites) -> None:
    site = sites.serve(Site(portal(news_days=recent_days())))
    for path in list(site.resources):
        site.resources[path].delay = 0.05
    result, _ = await probe(site.url + "/", min_interval="100ms", max_in_flight=2)
    assert result.success, result.error
    gaps = [later - earlier for earlier, later in itertools.pairwise(site.started)]
    assert min(gaps) >= 0.09  # request starts 100 ms apart; arrival at the server jitters by a few ms
    assert site.most_in_flight == 1  # 100 ms apart, 50 ms each: never two at once
    site.requests.clear()
    site.started.clear()
    site.most_in_flight = 0
    for path in list(site.resources):
        site.resources[path].delay = 0.3
    result, _ = await probe(site.url + "/", min_interval="1ms", max_in_flight=3)
    assert result.success, result.error
    assert site.most_in_flight == 3


async def test_crawl_delay_in_robots_txt_slows_the_crawl(sites: Sites) -> None:
    site = sites.serve(Site(portal(news_days=recent_days(), robots="User-agent: *\nCrawl-delay: 0.3\n")))
    await probe(site.url + "/", max_pages=3, sitemaps=[])
    starts = site.started[2:]  # after the home page and robots.txt
    assert len(starts) >= 3
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.29


@pytest.mark.slow
async def test_a_stuck_page_costs_the_rest_of_the_crawl_not_the_result(sites: Sites) -> None:
    site = sites.serve(Site(portal(news_days=recent_days())))
    site.resources["/van-ban"].delay = 30
    started = time.monotonic()
    result, got = await probe(site.url + "/", seconds=2.0, max_in_flight=1)
    assert time.monotonic() - started < 2.5
    assert got["egov_portal_crawl_truncated"] == 1
    assert got["egov_portal_pages_crawled"] >= 2
    assert result.success, result.error  # the menu on the home page names every item
    assert "cut short" not in result.error


async def test_an_https_portal_reports_its_certificate(sites: Sites, tmp_path: Any) -> None:
    import ssl

    import trustme

    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    site = sites.serve(Site(portal(news_days=recent_days())), tls=context)
    result, got = await probe(site.url + "/", tls_config={"ca_file": str(ca_file)})
    assert result.success, result.error
    assert got["probe_ssl_earliest_cert_expiry"] > time.time()
    assert got["egov_portal_pages_crawled"] > 5
    result, _ = await probe(site.url + "/")  # not signed by a CA the system trusts
    assert result.outcome is Outcome.TLS_FAILED
    assert result.error.startswith("home page: TLS handshake")


async def test_home_page_failures_fail_the_run(sites: Sites) -> None:
    missing = sites.serve(Site())
    result, got = await probe(missing.url + "/")
    assert result.outcome is Outcome.MISMATCH
    assert result.error == f"home page {missing.url}/ answered 404 Not Found"
    assert got["probe_http_status_code"] == 404
    assert got["egov_portal_item_present{van_ban}"] == 0
    not_html = sites.serve(Site({"/": Resource(b"%PDF", content_type="application/pdf")}))
    result, _ = await probe(not_html.url + "/")
    assert result.outcome is Outcome.MISMATCH
    assert "is not HTML" in result.error
    result, _ = await probe(f"http://127.0.0.1:{free_port()}/")
    assert result.outcome is Outcome.CONNECTION_FAILED
    result, got = await probe(f"http://{UNRESOLVABLE_HOST}/")
    assert result.outcome is Outcome.RESOLVE_FAILED
    assert got["egov_portal_pages_crawled"] == 0


async def test_redirects_on_the_same_site_are_followed_others_not(sites: Sites) -> None:
    outside = sites.serve(Site())
    site = sites.serve(Site(portal(news_days=recent_days())))
    site.resources["/trang-chu"] = site.resources.pop("/")
    site.resources["/"] = Resource(b"", status=302, location="/trang-chu")
    site.resources["/lien-he"] = Resource(b"", status=301, location=outside.url + "/lien-he")
    site.resources["/van-ban"] = Resource(b"", status=307, location="/van-ban/")
    site.resources["/van-ban/"] = Resource(page("Văn bản", "<p>Danh sách</p>"))
    result, got = await probe(site.url + "/")
    assert result.success, result.error
    assert {"/", "/trang-chu", "/van-ban", "/van-ban/", "/lien-he"} <= set(site.paths())
    assert site.paths().count("/trang-chu") == 1
    assert outside.requests == []
    assert got["egov_portal_broken_links"] == 2  # a redirect elsewhere is neither followed nor broken


async def test_config_rules_fail_at_load() -> None:
    from agent.config import parse_config
    from agent.errors import ConfigError

    office = "office: {org_id: 000.00.00.H49, name: t, level: province}\n"
    cases = {
        "portal: {required: [khong_co]}": "required lists unknown items: khong_co",
        "portal: {default_items: false}": "no items to look for",
        "portal: {items: {x: {}}}": "give at least one of link_texts",
        "portal: {items: {x: {url_patterns: ['(']}}}": "invalid regular expression",
        "portal: {min_interval: 5s}": "leaves no time to crawl within the timeout 6s",
        "portal: {feeds: ['rss.xml']}": "String should match pattern",
    }
    for body, message in cases.items():
        text = f"{office}modules:\n  p: {{kind: portal, timeout: 6s, {body}}}\n"
        text += "checks:\n  - {name: p, module: p, service: portal, targets: ['http://127.0.0.1:1/']}\n"
        with pytest.raises(ConfigError) as caught:
            parse_config(text.encode(), "agent.yaml")
        assert message in caught.value.render(), caught.value.render()
    bad_target = f"{office}modules:\n  p: {{kind: portal}}\nchecks:\n  - {{name: p, module: p, service: portal, " \
                 "targets: ['quangnam.gov.vn']}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(bad_target.encode(), "agent.yaml")
    assert "is not an http(s) URL" in caught.value.render()


@pytest.mark.slow
def test_egov_agent_probe_runs_a_portal_module(sites: Sites, tmp_path: Any) -> None:
    import subprocess

    from testlib import egov_agent_command

    site = sites.serve(Site(portal(news_days=recent_days(), english=False)))
    config = tmp_path / "agent.yaml"
    config.write_text("office: {org_id: 000.00.00.H49, name: UBND tỉnh, level: province}\nmodules:\n"
                      "  portal_content: {kind: portal, timeout: 10s, portal: {min_interval: 5ms}}\n", encoding="utf-8")
    done = subprocess.run([*egov_agent_command(), "probe", "--config", str(config), "--module", "portal_content",
                           site.url + "/", "--debug"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr  # no English page
    assert re.search(r'^egov_portal_item_present\{item="english",[^}]*\} 0$', done.stdout, re.MULTILINE)
    assert re.search(r'^egov_portal_item_present\{item="van_ban",[^}]*\} 1$', done.stdout, re.MULTILINE)
    assert re.search(r"^probe_success\{[^}]*\} 0$", done.stdout, re.MULTILINE)
    assert "not found on" in done.stderr and "english" in done.stderr
