"""One self-contained, printable HTML file with inline SVG charts (no scripts, no external resources)."""

from __future__ import annotations

from html import escape
from pathlib import Path

from exporters.kpi_report.compute import PROVINCE, KpiResult, Report, Row
from exporters.kpi_report.flat import write_atomic
from exporters.kpi_report.i18n import (
    fmt_change,
    fmt_duration,
    fmt_time,
    fmt_value,
    level_name,
    op_text,
    scope_name,
    t,
)

STATUS_COLOUR = {"met": "#2e7d32", "not_met": "#c62828", "no_data": "#9e9e9e", "no_target": "#f9a825"}
SERIES_COLOURS = ("#1f4e9c", "#e67e22", "#8e44ad", "#16a085", "#d35400", "#2c3e50")
MAX_OUTAGES = 300
_CSS = """
body{font-family:"Noto Sans","DejaVu Sans",Arial,sans-serif;margin:24px;color:#222;font-size:13px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 6px;border-bottom:2px solid #1f4e9c}
table{border-collapse:collapse;margin:8px 0;width:100%}th,td{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#d9e1f2}td.n{text-align:right;white-space:nowrap}tr.group td{font-weight:bold;background:#f3f6fb}
.meta td{border:none;padding:1px 8px 1px 0}.status{font-weight:bold}.met{color:#2e7d32}.not_met{color:#c62828}
.no_data{color:#757575}.no_target{color:#b7791f}.charts{display:flex;flex-wrap:wrap;gap:16px}
.note{color:#555;font-size:12px}section.kpi{page-break-inside:auto}
@media print{body{margin:8mm}section.kpi{page-break-before:always}h2{page-break-after:avoid}}
"""


def write_html(report: Report, path: Path, lang: str) -> None:
    """Write the HTML report atomically."""
    write_atomic(path, render_html(report, lang).encode())


def render_html(report: Report, lang: str) -> str:
    """The whole document."""
    parts = [f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">',
             f"<title>{escape(t('title', lang))} {report.period.label}</title><style>{_CSS}</style></head><body>",
             f"<h1>{escape(t('title', lang))}: {report.period.label}</h1>", _meta(report, lang),
             _overview_svg(report, lang), _summary(report, lang)]
    parts += [_kpi_section(report, result, lang) for result in report.results]
    parts.append(_outages(report, lang))
    parts.append("</body></html>")
    return "\n".join(parts)


def _meta(report: Report, lang: str) -> str:
    period = report.period
    rows = [(t("period", lang), period.label),
            (t("window", lang), f"{period.start.date()} .. {period.last_day} "
                                f"({t('window_' + period.window, lang)}, {period.tz.key})"),
            (t("hierarchy", lang), f"{report.hierarchy.name}: "
                                   + " > ".join(level_name(lvl, lang) for lvl in report.hierarchy.levels)),
            (t("source", lang), report.source),
            (t("generated", lang), report.generated_at.strftime("%Y-%m-%d %H:%M"))]
    rows += [(t("warnings", lang), w) for w in report.warnings]
    return '<table class="meta">' + "".join(f"<tr><td><b>{escape(k)}</b></td><td>{escape(v)}</td></tr>"
                                            for k, v in rows) + "</table>"


def _summary(report: Report, lang: str) -> str:
    head = [t("kpi", lang), t("section", lang), t("scope", lang), t("value", lang), t("target", lang),
            t("status", lang), t("previous", lang), t("change", lang), t("coverage", lang), t("with_data", lang)]
    body = []
    for result in report.results:
        groups = [r for r in result.rows if r.scope != "office"]
        for index, row in enumerate(groups):
            first = index == 0
            name = (f'<td rowspan="{len(groups)}">{escape(result.kpi.name.get(lang))}</td>'
                    f'<td rowspan="{len(groups)}">{escape(result.kpi.plan_section or "")}</td>') if first else ""
            body.append(f'<tr class="{"group" if first else ""}">{name}{_cells(result, row, lang, summary=True)}</tr>')
    return (f"<h2>{escape(t('summary', lang))}</h2><table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head)
            + "</tr>" + "".join(body) + "</table>")


def _cells(result: KpiResult, row: Row, lang: str, summary: bool = False) -> str:
    unit = result.kpi.unit
    target = ("" if row.target is None or result.target is None
              else f"{op_text(result.target.op)} {fmt_value(row.target, unit, lang)}")
    cells = [] if not summary else [f"<td>{escape(scope_name(row.scope, row.id, row.name, lang))}</td>"]
    cells += [f'<td class="n">{fmt_value(row.value, unit, lang)}</td>', f'<td class="n">{escape(target)}</td>',
              f'<td class="status {row.status}">{escape(t(row.status, lang))}</td>',
              f'<td class="n">{fmt_value(row.previous, unit, lang)}</td>',
              f'<td class="n">{escape(fmt_change(row.change, unit, lang))}</td>',
              f'<td class="n">{fmt_value(row.coverage, "ratio", lang)}</td>',
              f'<td class="n">{row.offices_with_data}/{row.offices}</td>']
    return "".join(cells)


def _kpi_section(report: Report, result: KpiResult, lang: str) -> str:
    kpi = result.kpi
    target = result.target
    lines = [f'<section class="kpi" id="{kpi.id}"><h2>{escape(kpi.name.get(lang))}</h2>']
    if kpi.description:
        lines.append(f'<p class="note">{escape(kpi.description.get(lang))}</p>')
    if target is not None:
        lines.append(f'<p class="note">{escape(t("target", lang))}: {escape(op_text(target.op))} '
                     f'{escape(_target_summary(result, lang))} ({escape(target.source)}). '
                     f'{escape(t("aggregation", lang))}: {escape(t(kpi.aggregation, lang))}; '
                     f'{escape(t("direction", lang))}: {escape(t(kpi.direction, lang))}.</p>')
    lines.append('<div class="charts">' + _trend_svg(report, result, lang) + _offices_svg(result, lang) + "</div>")
    head = [t("office", lang), t("org_id", lang), t("level", lang), t("value", lang), t("target", lang),
            t("status", lang), t("previous", lang), t("change", lang), t("coverage", lang), t("with_data", lang)]
    lines.append("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>")
    for row in result.rows:
        css = "group" if row.scope != "office" else ""
        lines.append(f'<tr class="{css}"><td>{escape(scope_name(row.scope, row.id, row.name, lang))}</td>'
                     f'<td>{escape(row.id if row.scope == "office" else "")}</td>'
                     f'<td>{escape(level_name(row.level, lang) if row.level else "")}</td>'
                     f"{_cells(result, row, lang)}</tr>")
    lines.append("</table></section>")
    return "\n".join(lines)


def _overview_svg(report: Report, lang: str) -> str:
    """One bar per KPI: the province-wide value on the KPI's own scale, coloured by status, with the target tick."""
    rows = [(r, next(row for row in r.rows if row.scope == "province")) for r in report.results]
    label_w, bar_w, line_h, top = 430, 420, 22, 30
    width, height = label_w + bar_w + 110, top + line_h * len(rows) + 12
    out = [_svg_open(width, height, t("summary", lang)),
           f'<text x="8" y="18" font-size="13" font-weight="bold">{escape(t("summary", lang))}: '
           f"{escape(t('province_wide', lang))}</text>"]
    for i, (result, row) in enumerate(rows):
        y = top + i * line_h
        name = result.kpi.name.get(lang)
        name = name if len(name) <= 62 else name[:60] + "…"
        out.append(f'<text x="8" y="{y + 14}" font-size="11">{escape(name)}</text>'
                   f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="14" fill="#eef1f6"/>')
        scale = _axis_max(result, [row.value] if row.value is not None else [])
        if row.value is not None:
            length = bar_w * min(max(row.value / scale, 0.0), 1.0)
            out.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(length, 1):.1f}" height="14" '
                       f'fill="{STATUS_COLOUR[row.status]}"/>')
        if row.target is not None:
            tx = label_w + bar_w * min(max(row.target / scale, 0.0), 1.0)
            out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{y}" y2="{y + 20}" stroke="#111" stroke-width="2"/>')
        text = fmt_value(row.value, result.kpi.unit, lang) if row.value is not None else t("no_data", lang)
        out.append(f'<text x="{label_w + bar_w + 8}" y="{y + 14}" font-size="11">{escape(text)}</text>')
    out.append("</svg>")
    return "".join(out)


def _trend_svg(report: Report, result: KpiResult, lang: str) -> str:
    """A line chart of the province and each level over the trend periods, with the target as a dashed line."""
    width, height, left, right, top, bottom = 580, 260, 56, 170, 28, 36
    periods = report.trend_periods
    series = list(result.trend.items())
    values = [v for _, vs in series for v in vs if v is not None]
    top_value = _axis_max(result, values)
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (plot_w * i / max(1, len(periods) - 1))

    def y(v: float) -> float:
        return top + plot_h * (1 - min(max(v / top_value, 0.0), 1.0))

    out = [_svg_open(width, height, f"{t('trend', lang)}: {result.kpi.name.get(lang)}"),
           f'<text x="{left}" y="16" font-size="12" font-weight="bold">{escape(t("trend", lang))}</text>']
    out += _y_axis(result, top_value, left, top, plot_w, plot_h, lang)
    for i, label in enumerate(periods):
        out.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" font-size="10" text-anchor="middle">'
                   f"{escape(label)}</text>")
    goal = result.target.value_for(None) if result.target else None
    if goal is not None:
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(goal):.1f}" y2="{y(goal):.1f}" '
                   f'stroke="#c62828" stroke-width="1.5" stroke-dasharray="6 4"/>')
    for index, (scope_id, vs) in enumerate(series):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        points = [(x(i), y(v)) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="{3 if index == 0 else 2}" points="'
                       + " ".join(f"{px:.1f},{py:.1f}" for px, py in points) + '"/>')
        out += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}"/>' for px, py in points]
        name = t("province_wide", lang) if scope_id == PROVINCE else level_name(scope_id, lang)
        ly = top + 14 * index + 8
        out.append(f'<rect x="{width - right + 10}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{width - right + 24}" y="{ly + 1}" font-size="11">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _offices_svg(result: KpiResult, lang: str) -> str:
    """One bar per office (sorted), coloured by status, with the target line; offices without data as grey ticks."""
    offices = [r for r in result.rows if r.scope == "office"]
    width, height, left, top, bottom = 640, 260, 56, 28, 40
    plot_w, plot_h = width - left - 16, height - top - bottom
    values = [r.value for r in offices if r.value is not None]
    top_value = _axis_max(result, values)
    ordered = sorted(offices, key=lambda r: (r.value is None, -(r.value or 0.0)))
    bar = plot_w / max(1, len(ordered))
    out = [_svg_open(width, height, f"{t('offices_vs_target', lang)}: {result.kpi.name.get(lang)}"),
           f'<text x="{left}" y="16" font-size="12" font-weight="bold">{escape(t("offices_vs_target", lang))}</text>']
    out += _y_axis(result, top_value, left, top, plot_w, plot_h, lang)
    for i, row in enumerate(ordered):
        x0 = left + i * bar
        if row.value is None:
            out.append(f'<rect x="{x0 + bar * 0.1:.2f}" y="{top + plot_h - 4}" width="{max(bar * 0.8, 0.5):.2f}" '
                       f'height="4" fill="{STATUS_COLOUR["no_data"]}"><title>{escape(row.name)}: '
                       f"{escape(t('no_data', lang))}</title></rect>")
            continue
        h = plot_h * min(max(row.value / top_value, 0.0), 1.0)
        out.append(f'<rect x="{x0 + bar * 0.1:.2f}" y="{top + plot_h - h:.2f}" width="{max(bar * 0.8, 0.5):.2f}" '
                   f'height="{max(h, 0.5):.2f}" fill="{STATUS_COLOUR[row.status]}"><title>{escape(row.name)}: '
                   f"{fmt_value(row.value, result.kpi.unit, lang)}</title></rect>")
    goals = {r.target for r in ordered if r.target is not None}
    if len(goals) == 1:
        goal = goals.pop()
        gy = top + plot_h * (1 - min(max(goal / top_value, 0.0), 1.0))
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#c62828" '
                   f'stroke-width="1.5" stroke-dasharray="6 4"/>')
    elif goals:  # per-level targets differ: each office's own goal as a tick over its bar
        for i, row in enumerate(ordered):
            if row.target is not None:
                gy = top + plot_h * (1 - min(max(row.target / top_value, 0.0), 1.0))
                out.append(f'<line x1="{left + i * bar:.2f}" x2="{left + (i + 1) * bar:.2f}" y1="{gy:.1f}" '
                           f'y2="{gy:.1f}" stroke="#c62828" stroke-width="2"/>')
    legend = [("met", t("met", lang)), ("not_met", t("not_met", lang)), ("no_data", t("no_data", lang))]
    for i, (status, text) in enumerate(legend):
        lx = left + i * 150
        out.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{STATUS_COLOUR[status]}"/>'
                   f'<text x="{lx + 14}" y="{height - 5}" font-size="11">{escape(text)}</text>')
    out.append("</svg>")
    return "".join(out)


def _outages(report: Report, lang: str) -> str:
    names = {o.org_id: o.name for o in report.offices}
    tz = report.period.tz
    head = [t("office", lang), t("org_id", lang), t("service", lang), t("check", lang), t("target_url", lang),
            t("start", lang), t("end", lang), t("duration", lang)]
    title = (f"<h2>{escape(t('outages', lang))} ({len(report.outages)}; {escape(t('resolution', lang))} "
             f"{fmt_duration(report.outage_resolution)})</h2>")
    if not report.outages:
        return title + f"<p>{escape(t('no_outages', lang))}</p>"
    rows = [f"<tr><td>{escape(names.get(o.office or '', t('unknown_office', lang)))}</td><td>{escape(o.org_id)}</td>"
            f"<td>{escape(o.service)}</td><td>{escape(o.check)}</td><td>{escape(o.target)}</td>"
            f"<td>{fmt_time(o.start, tz)}</td><td>{fmt_time(o.end, tz)}</td>"
            f'<td class="n">{fmt_duration(o.seconds)}</td></tr>' for o in report.outages[:MAX_OUTAGES]]
    more = (f'<p class="note">... {len(report.outages) - MAX_OUTAGES} more (csv/json/xlsx)</p>'
            if len(report.outages) > MAX_OUTAGES else "")
    return (title + "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>" + "".join(rows)
            + "</table>" + more)


def _target_summary(result: KpiResult, lang: str) -> str:
    assert result.target is not None
    value = result.target.value
    if isinstance(value, dict):
        return ", ".join(f"{level_name(k, lang)} {fmt_value(v, result.kpi.unit, lang)}" for k, v in value.items())
    return fmt_value(value, result.kpi.unit, lang)


def _axis_max(result: KpiResult, values: list[float]) -> float:
    if result.kpi.unit == "ratio":
        return 1.0
    goals = [r.target for r in result.rows if r.target is not None]
    return max([*values, *goals, 1.0]) * 1.1


def _y_axis(result: KpiResult, top_value: float, left: int, top: int, plot_w: float, plot_h: float,
            lang: str) -> list[str]:
    out = []
    for i in range(5):
        v = top_value * i / 4
        yy = top + plot_h * (1 - i / 4)
        out.append(f'<line x1="{left}" x2="{left + plot_w:.1f}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e0e0e0"/>'
                   f'<text x="{left - 6}" y="{yy + 4:.1f}" font-size="10" text-anchor="end">'
                   f"{escape(fmt_value(v, result.kpi.unit, lang))}</text>")
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h:.1f}" stroke="#555"/>')
    return out


def _svg_open(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img"><title>{escape(title)}</title>'
            f'<rect width="{width}" height="{height}" fill="#ffffff" stroke="#ddd"/>')
