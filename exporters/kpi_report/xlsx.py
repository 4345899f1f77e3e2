"""The spreadsheet: a summary sheet, one sheet per KPI and an outages sheet (openpyxl, imported here only)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from exporters.kpi_report.catalogue import Target
from exporters.kpi_report.compute import KpiResult, Report, Row
from exporters.kpi_report.flat import write_atomic
from exporters.kpi_report.i18n import fmt_duration, fmt_time, fmt_value, level_name, op_text, scope_name, t

STATUS_FILL = {"met": "C6EFCE", "not_met": "FFC7CE", "no_data": "E7E6E6", "no_target": "FFF2CC"}
_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")


def write_xlsx(report: Report, path: Path, lang: str) -> None:
    """Write the workbook atomically."""
    from openpyxl import Workbook

    book = Workbook()
    summary = book.create_sheet()
    book.remove(book.worksheets[0])
    summary.title = _sheet_name(t("summary", lang))
    _summary(summary, report, lang)
    used = {summary.title}
    for result in report.results:
        name = _sheet_name(result.kpi.id)
        while name in used:
            name = _sheet_name(name[:28] + f"_{len(used)}")
        used.add(name)
        _kpi_sheet(book.create_sheet(name), report, result, lang)
    _outages(book.create_sheet(_sheet_name(t("outages", lang))), report, lang)
    buffer = io.BytesIO()
    book.save(buffer)
    write_atomic(path, buffer.getvalue())


def _summary(sheet: Any, report: Report, lang: str) -> None:
    _heading(sheet, report, lang)
    headers = [t("kpi", lang), t("section", lang), t("scope", lang), t("value", lang), t("target", lang),
               t("status", lang), t("previous", lang), t("change", lang), t("coverage", lang), t("with_data", lang),
               t("offices", lang), t("plan_target", lang), t("target_source", lang)]
    start = sheet.max_row + 2
    _header_row(sheet, start, headers)
    for result in report.results:
        for row in (r for r in result.rows if r.scope != "office"):
            plan = result.kpi.targets.plan
            values = [result.kpi.name.get(lang), result.kpi.plan_section or "",
                      scope_name(row.scope, row.id, row.name, lang),
                      row.value, _target_text(result, row.target, lang), t(row.status, lang), row.previous, row.change,
                      row.coverage, row.offices_with_data, row.offices,
                      "" if plan is None else _plan_text(plan, row.level, result.kpi.unit, lang),
                      result.target.source if result.target else ""]
            _data_row(sheet, values, result, row, number_cols=(4, 7, 8), ratio_cols=(9,), status_col=6)
    _widths(sheet, [48, 10, 22, 12, 16, 18, 12, 12, 14, 12, 10, 18, 40])
    sheet.freeze_panes = sheet.cell(row=start + 1, column=2)


def _kpi_sheet(sheet: Any, report: Report, result: KpiResult, lang: str) -> None:
    kpi = result.kpi
    _append(sheet, [kpi.name.get(lang)])
    sheet.cell(row=1, column=1).font = _font(bold=True, size=13)
    if kpi.description:
        _append(sheet, [kpi.description.get(lang)])
    _append(sheet, [t("period", lang), report.period.describe()])
    _append(sheet, [t("target", lang), _target_text(result, _flat_value(result), lang),
                  result.target.source if result.target else ""])
    _append(sheet, [t("aggregation", lang), t(kpi.aggregation, lang), t("direction", lang), t(kpi.direction, lang)])
    headers = [t("scope", lang), t("org_id", lang), t("office", lang), t("level", lang), t("value", lang),
               t("target", lang), t("status", lang), t("previous", lang), t("change", lang), t("coverage", lang),
               t("numerator", lang), t("denominator", lang)]
    start = sheet.max_row + 2
    _header_row(sheet, start, headers)
    for row in result.rows:
        values = [t("province_wide", lang) if row.scope == "province" else
                  (t("level", lang) if row.scope == "level" else t("office", lang)),
                  row.id if row.scope == "office" else "", scope_name(row.scope, row.id, row.name, lang),
                  level_name(row.level, lang) if row.level else "", row.value, _target_text(result, row.target, lang),
                  t(row.status, lang), row.previous, row.change, row.coverage, row.numerator, row.denominator]
        _data_row(sheet, values, result, row, number_cols=(5, 8, 9), ratio_cols=(10,), status_col=7)
    _widths(sheet, [18, 18, 40, 14, 12, 14, 18, 12, 12, 14, 12, 12])
    sheet.freeze_panes = sheet.cell(row=start + 1, column=4)


def _outages(sheet: Any, report: Report, lang: str) -> None:
    _heading(sheet, report, lang)
    names = {o.org_id: o.name for o in report.offices}
    headers = [t("office", lang), t("org_id", lang), t("service", lang), t("check", lang), t("target_url", lang),
               t("start", lang), t("end", lang), t("duration", lang), "seconds"]
    start = sheet.max_row + 2
    _header_row(sheet, start, headers)
    tz = report.period.tz
    for o in report.outages:
        _append(sheet, [names.get(o.office or "", t("unknown_office", lang)), o.org_id, o.service, o.check, o.target,
                      fmt_time(o.start, tz), fmt_time(o.end, tz), fmt_duration(o.seconds), o.seconds])
    if not report.outages:
        _append(sheet, [t("no_outages", lang)])
    _widths(sheet, [36, 18, 12, 18, 36, 18, 18, 12, 10])


def _heading(sheet: Any, report: Report, lang: str) -> None:
    window = t(f"window_{report.period.window}", lang)
    _append(sheet, [t("title", lang)])
    sheet.cell(row=1, column=1).font = _font(bold=True, size=14)
    _append(sheet, [t("period", lang), report.period.label])
    _append(sheet, [t("window", lang), f"{report.period.start.date()} .. {report.period.last_day} ({window}, "
                                     f"{report.period.tz.key})"])
    _append(sheet, [t("hierarchy", lang), f"{report.hierarchy.name}: "
                                        + " > ".join(level_name(lvl, lang) for lvl in report.hierarchy.levels)])
    _append(sheet, [t("source", lang), report.source])
    _append(sheet, [t("generated", lang), report.generated_at.strftime("%Y-%m-%d %H:%M")])
    for warning in report.warnings:
        _append(sheet, [t("warnings", lang), warning])


def _append(sheet: Any, values: list[Any]) -> None:
    """Append a row; text from the store or the inventory is never taken for a formula."""
    sheet.append(values)
    for cell in sheet[sheet.max_row]:
        if cell.data_type == "f":
            cell.data_type = "s"


def _header_row(sheet: Any, row: int, headers: list[str]) -> None:
    from openpyxl.styles import Alignment, PatternFill

    for col, text in enumerate(headers, start=1):
        cell = sheet.cell(row=row, column=col, value=text)
        cell.font = _font(bold=True)
        cell.fill = PatternFill("solid", fgColor="D9E1F2")
        cell.alignment = Alignment(wrap_text=True, vertical="top")


def _data_row(sheet: Any, values: list[Any], result: KpiResult, row: Row, number_cols: tuple[int, ...],
              ratio_cols: tuple[int, ...], status_col: int) -> None:
    from openpyxl.styles import PatternFill

    _append(sheet, values)
    line = sheet.max_row
    value_format = "0.0%" if result.kpi.unit == "ratio" else "#,##0.##"
    for col in number_cols:
        sheet.cell(row=line, column=col).number_format = value_format
    for col in ratio_cols:
        sheet.cell(row=line, column=col).number_format = "0.0%"
    sheet.cell(row=line, column=status_col).fill = PatternFill("solid", fgColor=STATUS_FILL[row.status])
    if row.scope != "office":
        for col in range(1, len(values) + 1):
            sheet.cell(row=line, column=col).font = _font(bold=True)


def _font(bold: bool = False, size: float = 11) -> Any:
    from openpyxl.styles import Font

    return Font(bold=bold, size=size)


def _widths(sheet: Any, widths: list[int]) -> None:
    from openpyxl.utils import get_column_letter

    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width


def _target_text(result: KpiResult, value: float | None, lang: str) -> str:
    if result.target is None or value is None:
        return ""
    return f"{op_text(result.target.op)} {fmt_value(value, result.kpi.unit, lang)}"


def _plan_text(plan: Target, level: str | None, unit: str, lang: str) -> str:
    value = plan.value_for(level)
    return "" if value is None else f"{op_text(plan.op)} {fmt_value(value, unit, lang)}"


def _flat_value(result: KpiResult) -> float | None:
    if result.target is None or isinstance(result.target.value, dict):
        return None
    return result.target.value


def _sheet_name(text: str) -> str:
    return _BAD_SHEET_CHARS.sub("_", text)[:31]
