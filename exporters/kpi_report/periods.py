"""Reporting periods: a calendar month, or the 15th of the previous month to the 14th (Vietnamese reporting cut-off)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WindowKind = Literal["calendar", "15-14"]
WINDOWS: tuple[WindowKind, ...] = ("calendar", "15-14")
_PERIOD_RE = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, slots=True)
class Period:
    """One reporting period: label YYYY-MM and its window [start, end) in the report's time zone."""

    year: int
    month: int
    window: WindowKind
    tz: ZoneInfo

    @property
    def label(self) -> str:
        """YYYY-MM."""
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> dt.datetime:
        """First instant of the window (local midnight)."""
        if self.window == "calendar":
            return dt.datetime(self.year, self.month, 1, tzinfo=self.tz)
        year, month = _shift(self.year, self.month, -1)
        return dt.datetime(year, month, 15, tzinfo=self.tz)

    @property
    def end(self) -> dt.datetime:
        """First instant after the window."""
        if self.window == "calendar":
            year, month = _shift(self.year, self.month, 1)
            return dt.datetime(year, month, 1, tzinfo=self.tz)
        return dt.datetime(self.year, self.month, 15, tzinfo=self.tz)

    @property
    def last_day(self) -> dt.date:
        """The window's last day (its hierarchy and targets are those in force on it)."""
        return (self.end - dt.timedelta(days=1)).date()

    @property
    def seconds(self) -> int:
        """Length of the window in seconds (DST-free zones: whole days)."""
        return int(self.end.timestamp() - self.start.timestamp())

    def shifted(self, months: int) -> Period:
        """The period `months` later (negative: earlier)."""
        year, month = _shift(self.year, self.month, months)
        return Period(year, month, self.window, self.tz)

    def describe(self) -> str:
        """E.g. '2026-10 (2026-09-15 .. 2026-10-14, Asia/Ho_Chi_Minh)'."""
        return f"{self.label} ({self.start.date()} .. {self.last_day}, {self.tz.key})"


def parse_period(text: str, window: WindowKind, tz_name: str, now: dt.datetime | None = None) -> Period:
    """YYYY-MM, or "last" for the latest period whose window has ended; raises ValueError with a clear message."""
    tz = parse_tz(tz_name)
    if text == "last":
        current = (now or dt.datetime.now(dt.UTC)).astimezone(tz)
        period = Period(current.year, current.month, window, tz)
        while period.end > current:
            period = period.shifted(-1)
        return period
    match = _PERIOD_RE.match(text)
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1971:
        raise ValueError(f"invalid period {text!r}: use YYYY-MM (e.g. 2026-10) or 'last'")
    return Period(int(match.group(1)), int(match.group(2)), window, tz)


def parse_tz(name: str) -> ZoneInfo:
    """A zoneinfo time zone; ValueError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (e.g. Asia/Ho_Chi_Minh)") from None


def _shift(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1
