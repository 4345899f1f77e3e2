"""Words of the human-readable reports in Vietnamese (default) and English, and value formatting."""

from __future__ import annotations

import datetime as dt

LANGS = ("vi", "en")
_VI_NUMBERS = str.maketrans(".,", ",.")  # Vietnamese writes 1.234,5

_TEXT: dict[str, tuple[str, str]] = {
    "title": ("Báo cáo chỉ tiêu hiện đại hóa hành chính", "Administrative modernization KPI report"),
    "period": ("Kỳ báo cáo", "Period"),
    "window": ("Khoảng thời gian", "Window"),
    "hierarchy": ("Mô hình tổ chức", "Hierarchy"),
    "source": ("Nguồn dữ liệu", "Data source"),
    "generated": ("Thời điểm lập", "Generated"),
    "summary": ("Tổng hợp", "Summary"),
    "kpi": ("Chỉ tiêu", "KPI"),
    "section": ("Mục kế hoạch", "Plan section"),
    "scope": ("Phạm vi", "Scope"),
    "office": ("Cơ quan", "Office"),
    "org_id": ("Mã định danh", "Org id"),
    "level": ("Cấp", "Level"),
    "value": ("Giá trị", "Value"),
    "target": ("Chỉ tiêu đang áp dụng", "Target in force"),
    "target_source": ("Căn cứ", "Target source"),
    "plan_target": ("Chỉ tiêu 2015 (QĐ 1009)", "Plan target 2015 (Decision 1009)"),
    "status": ("Đánh giá", "Status"),
    "previous": ("Kỳ trước", "Previous period"),
    "change": ("Thay đổi", "Change"),
    "coverage": ("Độ phủ dữ liệu", "Data coverage"),
    "with_data": ("Số cơ quan có dữ liệu", "Offices with data"),
    "offices": ("Số cơ quan", "Offices"),
    "numerator": ("Tử số", "Numerator"),
    "denominator": ("Mẫu số", "Denominator"),
    "direction": ("Chiều tốt", "Better when"),
    "higher": ("cao hơn", "higher"),
    "lower": ("thấp hơn", "lower"),
    "aggregation": ("Cách tổng hợp", "Aggregation"),
    "ratio_of_sums": ("tỷ lệ của tổng", "ratio of sums"),
    "mean": ("trung bình các cơ quan", "mean of offices"),
    "sum": ("tổng", "sum"),
    "outages": ("Sự cố gián đoạn", "Outages"),
    "service": ("Dịch vụ", "Service"),
    "check": ("Kiểm tra", "Check"),
    "target_url": ("Đích", "Target"),
    "start": ("Bắt đầu", "Start"),
    "end": ("Kết thúc", "End"),
    "duration": ("Thời lượng", "Duration"),
    "trend": ("Diễn biến theo kỳ", "Trend by period"),
    "offices_vs_target": ("Các cơ quan so với chỉ tiêu", "Offices against the target"),
    "met": ("Đạt", "Met"),
    "not_met": ("Không đạt", "Not met"),
    "no_data": ("Không có dữ liệu", "No data"),
    "no_target": ("Chưa có chỉ tiêu", "No target"),
    "province_wide": ("Toàn tỉnh/thành phố", "Province-wide"),
    "no_outages": ("Không có sự cố trong kỳ.", "No outages in the period."),
    "missing_offices": ("Cơ quan không có dữ liệu", "Offices without data"),
    "warnings": ("Lưu ý", "Notes"),
    "window_calendar": ("tháng dương lịch", "calendar month"),
    "window_15-14": ("từ ngày 15 tháng trước đến ngày 14 tháng báo cáo", "15th of the previous month to the 14th"),
    "resolution": ("độ phân giải", "resolution"),
    "unknown_office": ("(không có trong danh mục)", "(not in the inventory)"),
}

_LEVELS: dict[str, tuple[str, str]] = {
    "province": ("Cấp tỉnh", "Province"),
    "city": ("Cấp thành phố", "City"),
    "district": ("Cấp huyện", "District"),
    "commune": ("Cấp xã", "Commune"),
}


def t(key: str, lang: str) -> str:
    """The text for `key` in `lang`."""
    vi, en = _TEXT[key]
    return vi if lang == "vi" else en


def level_name(level: str, lang: str) -> str:
    """A level's display name; unknown levels as written."""
    pair = _LEVELS.get(level)
    return level if pair is None else (pair[0] if lang == "vi" else pair[1])


def scope_name(scope: str, row_id: str, name: str, lang: str) -> str:
    """Display name of a row: the province, a level, or the office's name."""
    if scope == "province":
        return t("province_wide", lang)
    if scope == "level":
        return level_name(row_id, lang)
    return name


def fmt_value(value: float | None, unit: str, lang: str) -> str:
    """A KPI value for people: ratios as percentages, counts as integers; '' when missing."""
    if value is None:
        return ""
    if unit == "ratio":
        text = f"{value * 100:.1f}%"
    elif unit == "count":
        text = f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
    elif unit == "seconds":
        text = f"{value:.3g} s"
    else:
        text = f"{value:.2f}"
    return text.translate(_VI_NUMBERS) if lang == "vi" else text


def fmt_change(value: float | None, unit: str, lang: str) -> str:
    """A change between periods: percentage points for ratios, signed."""
    if value is None:
        return ""
    points = "điểm %" if lang == "vi" else "pp"
    text = f"{value * 100:+.1f} {points}" if unit == "ratio" else f"{value:+.3g}"
    return text.translate(_VI_NUMBERS) if lang == "vi" else text


def op_text(op: str) -> str:
    """A comparison for people: >= as ≥, <= as ≤."""
    return {">=": "≥", "<=": "≤"}.get(op, op)


def fmt_duration(seconds: float) -> str:
    """1d 2h 05m style."""
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return (f"{days}d " if days else "") + (f"{hours}h " if days or hours else "") + f"{mins:02d}m"


def fmt_time(stamp: float, tz: dt.tzinfo) -> str:
    """Local date and time of a Unix timestamp."""
    return dt.datetime.fromtimestamp(stamp, tz).strftime("%Y-%m-%d %H:%M")
