"""The status page at `/`: one table of checks that a commune's part-time IT officer can read in a browser."""

from __future__ import annotations

import time
from html import escape

from agent import __version__
from agent.store import JobStatus

_HEAD = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>egov-agent: {office}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}
table{{border-collapse:collapse;width:100%}}th,td{{border:1px solid #ccc;padding:.35em .5em;text-align:left;
vertical-align:top}}th{{background:#f0f0f0}}th small{{font-weight:normal;color:#666}}
.ok{{color:#0a6b0a;font-weight:bold}}.fail{{color:#b00020;font-weight:bold}}.err{{font-family:monospace;
font-size:.9em;word-break:break-word}}footer{{margin-top:1em;color:#666;font-size:.9em}}
</style></head><body>
<h1>{office}</h1>
<p>Mã định danh / Agency code: <b>{org_id}</b> · Cấp / Level: <b>{level}</b> ·
Đang lỗi / Failing: <b class="{summary_class}">{failing}</b> / {total}</p>
"""

_COLUMNS = (
    ("Dịch vụ", "Service"),
    ("Kiểm tra", "Check"),
    ("Đối tượng", "Target"),
    ("Kết quả", "Last result"),
    ("Nguyên nhân", "Outcome"),
    ("Thành công gần nhất", "Last success"),
    ("Lỗi gần nhất", "Last error"),
)


def render_status_page(statuses: list[JobStatus], office: dict[str, str], now: float | None = None) -> str:
    """The whole HTML page for the given job statuses; everything shown is escaped."""
    now = time.time() if now is None else now
    failing = sum(1 for s in statuses if not s.last.success)
    parts = [
        _HEAD.format(
            office=escape(office.get("name", "egov-agent")),
            org_id=escape(office.get("org_id", "-")),
            level=escape(office.get("level", "-")),
            failing=failing,
            total=len(statuses),
            summary_class="fail" if failing else "ok",
        ),
        "<table><thead><tr>",
        *(f"<th>{vi}<br><small>{en}</small></th>" for vi, en in _COLUMNS),
        "</tr></thead><tbody>\n",
    ]
    if not statuses:
        parts.append(f'<tr><td colspan="{len(_COLUMNS)}">Chưa có kết quả / No results yet</td></tr>\n')
    for status in statuses:
        job, last = status.last.job, status.last
        result = '<span class="ok">Tốt / OK</span>' if last.success else '<span class="fail">Lỗi / FAIL</span>'
        error = ""
        if status.last_error:
            error = f"{escape(status.last_error)}<br><small>{_ago(status.last_error_at, now)}</small>"
        parts.append(
            f"<tr><td>{escape(job.service)}</td><td>{escape(job.check)}</td><td>{escape(job.target)}</td>"
            f"<td>{result}<br><small>{_ago(last.finished_at, now)}</small></td><td>{escape(str(last.outcome))}</td>"
            f"<td>{_ago(status.last_success_at, now)}</td><td class=\"err\">{error}</td></tr>\n"
        )
    parts.append(
        f"</tbody></table><footer>egov-agent {escape(__version__)} · "
        '<a href="/metrics">/metrics</a> · Tự làm mới sau 30 giây / Refreshes every 30 s</footer></body></html>\n'
    )
    return "".join(parts)


def _ago(at: float | None, now: float) -> str:
    if at is None:
        return "chưa có / never"
    seconds = max(0, int(now - at))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    if seconds < 120:
        return f"{stamp} ({seconds} giây trước / {seconds}s ago)"
    if seconds < 7200:
        return f"{stamp} ({seconds // 60} phút trước / {seconds // 60}m ago)"
    return f"{stamp} ({seconds // 3600} giờ trước / {seconds // 3600}h ago)"
