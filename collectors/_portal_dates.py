"""Update times a portal shows: RSS/Atom item dates, sitemap lastmod, dd/mm/yyyy on pages; as Unix times.

Times without a zone are Vietnam's (UTC+7, no daylight saving). Dates in the future are not updates (a document's
expiry, an upcoming meeting) and are dropped by the caller with `not_after`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

VIETNAM = timezone(timedelta(hours=7))
FIRST_YEAR = 1995
"""Dates on pages before this year are not updates of a web portal (founding dates, old decisions)."""

# No lookbehind: it makes the scan twice as slow; a match preceded by a digit or separator is dropped below.
_PAGE_DATE = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-]((?:19|20)\d\d)(?![\d/.-]?\d)")
_NOT_BEFORE_DATE = frozenset("0123456789/.-")
_ENTRY = re.compile(r"<(item|entry)\b.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_ENTRY_DATE = re.compile(r"<(pubDate|dc:date|updated|published)\s*>\s*(?:<!\[CDATA\[)?\s*([^<\]]{4,64}?)\s*"
                         r"(?:\]\]>)?\s*</\1\s*>", re.IGNORECASE)
_LASTMOD = re.compile(r"<lastmod\s*>\s*([^<]{4,64}?)\s*</lastmod\s*>", re.IGNORECASE)


def page_days(text: str) -> set[float]:
    """Start (00:00 in Vietnam) of each valid date written dd/mm/yyyy, dd-mm-yyyy or dd.mm.yyyy, from 1995 on."""
    days: set[float] = set()
    found_text = {match.groups() for match in _PAGE_DATE.finditer(text)
                  if not match.start() or text[match.start() - 1] not in _NOT_BEFORE_DATE}
    for day, month, year in found_text:
        try:
            found = date(int(year), int(month), int(day))
        except ValueError:
            continue
        if found.year < FIRST_YEAR:
            continue
        days.add(datetime(found.year, found.month, found.day, tzinfo=VIETNAM).timestamp())
    return days


def feed_times(text: str) -> list[float]:
    """Dates of the items of an RSS feed (pubDate, dc:date) or entries of an Atom feed (updated, published)."""
    times: list[float] = []
    for entry in _ENTRY.finditer(text):
        for _, value in _ENTRY_DATE.findall(entry.group(0)):
            stamp = iso_time(value) if value[:4].isdigit() else rfc822_time(value)
            if stamp is not None:
                times.append(stamp)
    return times


def sitemap_times(text: str) -> list[float]:
    """The <lastmod> values of a sitemap or sitemap index (W3C datetime)."""
    return [stamp for value in _LASTMOD.findall(text) if (stamp := iso_time(value)) is not None]


def iso_time(value: str) -> float | None:
    """A W3C/ISO 8601 date or date-time ('2026-11-20', '2026-11-20T08:00:00Z', '...+07:00'), else None."""
    text = value.strip()
    if len(text) < 10:
        return None
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=VIETNAM)).timestamp()


def rfc822_time(value: str) -> float | None:
    """An RFC 822 date as RSS writes it ('Fri, 20 Nov 2026 08:00:00 +0700'), else None."""
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
