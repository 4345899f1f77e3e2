"""The status page: one row per job, Vietnamese with English, everything escaped."""

from __future__ import annotations

from html.parser import HTMLParser

from agent.errors import Outcome
from agent.runner import Job, ProbeResult
from agent.store import ResultStore
from collectors.base import CollectorSpec, Settings
from exporters.status_page import render_status_page


async def _probe(ctx: object, settings: Settings) -> bool:
    return True


SPEC = CollectorSpec("test", Settings, _probe, ())


def result(target: str, success: bool, at: float, error: str = "") -> ProbeResult:
    job = Job("portal", target, "http_2xx", "portal", 60, 5, SPEC, Settings())
    outcome = Outcome.SUCCESS if success else Outcome.TIMEOUT
    return ProbeResult(job, success, outcome, 0.1, at, [], error)


class Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_td = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        self._in_td = tag in ("td", "th") or self._in_td

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_td = False

    def handle_data(self, data: str) -> None:
        if self._in_td and self.rows:
            self.rows[-1].append(data)


def test_rows_show_last_result_success_and_error() -> None:
    store = ResultStore()
    store.put(result("https://a.example/", True, 1000.0))
    store.put(result("https://a.example/", False, 1060.0, "no result within the module's timeout of 5s"))
    store.put(result("https://b.example/<script>", True, 1000.0))
    page = render_status_page(store.status(), {"name": "UBND xã Tam Xuân 1", "org_id": "000.00.20.H49",
                                               "level": "commune"}, now=1070.0)
    assert "<script>" not in page and "&lt;script&gt;" in page
    parser = Cells()
    parser.feed(page)
    header, *rows = parser.rows
    assert "Dịch vụ" in header and "Service" in header and "Lỗi gần nhất" in header and "Last error" in header
    first = " ".join(rows[0])
    assert "https://a.example/" in first and "Lỗi / FAIL" in first and "timeout" in first
    assert "no result within the module's timeout of 5s" in first
    assert "(10 giây trước / 10s ago)" in first and "(70 giây trước / 70s ago)" in first
    assert "Tốt / OK" in " ".join(rows[1])
    assert "Đang lỗi / Failing" in page and ">1</b> / 2" in page


def test_empty_store_says_so() -> None:
    page = render_status_page([], {})
    assert "Chưa có kết quả / No results yet" in page
