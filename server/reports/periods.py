"""Report periods: a month, a quarter, a year or two local dates, as a UTC window."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from schedules import local_tz, to_local_wall, wall_to_utc
from server.domain import DomainError

MAX_DAYS = 5 * 366  # five years, leap days included
DAILY_UP_TO = 92  # availability per day up to a quarter, per month beyond
FIRST_YEAR, LAST_YEAR = 2000, 2100
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-[Qq]([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")


@dataclass(frozen=True)
class Period:
    """Local dates first..last (both included) and the UTC window [since, until)."""

    label: str
    first: date
    last: date
    since: datetime
    until: datetime


def _bad(detail: str) -> DomainError:
    return DomainError(422, detail)


def _year(text: str) -> int:
    year = int(text)
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise _bad(f"The year must be between {FIRST_YEAR} and {LAST_YEAR}.")
    return year


def _month_end(year: int, month: int) -> date:
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return following - timedelta(days=1)


def _named(text: str) -> tuple[date, date]:
    """The first and last day of a month (2026-11), a quarter (2026-Q4) or a year (2026)."""
    if m := _MONTH.match(text):
        year, month = _year(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise _bad(f"Period {text!r}: the month must be 01 to 12.")
        return date(year, month, 1), _month_end(year, month)
    if m := _QUARTER.match(text):
        year, quarter = _year(m[1]), int(m[2])
        return date(year, 3 * quarter - 2, 1), _month_end(year, 3 * quarter)
    if m := _YEAR.match(text):
        year = _year(m[1])
        return date(year, 1, 1), date(year, 12, 31)
    raise _bad(
        f"Period {text!r} is not understood: write a month (2026-11), a quarter (2026-Q4), "
        "a year (2026), or give from and to dates (2026-11-01)."
    )


def _day(name: str, text: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise _bad(f"{name} must be a date like 2026-11-30, not {text!r}.") from None
    _year(str(day.year))
    return day


def parse_period(period: str = "", start: str = "", end: str = "") -> Period:
    """The report window for `period`, or for local dates `start`..`end` (end included)."""
    period, start, end = period.strip(), start.strip(), end.strip()
    if period and (start or end):
        raise _bad("Give either period or from/to dates, not both.")
    if period:
        first, last = _named(period)
        label = period.upper()
    elif start and end:
        first, last = _day("from", start), _day("to", end)
        if last < first:
            raise _bad("from must not be after to.")
        label = f"{first.isoformat()}..{last.isoformat()}"
    else:
        raise _bad("Choose a period (2026-11, 2026-Q4, 2026) or both from and to dates.")
    if (last - first).days + 1 > MAX_DAYS:
        raise _bad("A report covers at most five years.")
    tz = local_tz()
    since = wall_to_utc(datetime.combine(first, time(0, 0)), tz=tz).astimezone(UTC)
    until = wall_to_utc(datetime.combine(last + timedelta(days=1), time(0, 0)), tz=tz)
    return Period(label, first, last, since, until.astimezone(UTC))


def bucket_edges(first: date, last: date) -> list[datetime]:
    """UTC instants of local midnight starting each day (up to 92 days) or month, plus the end."""
    tz = local_tz()
    if (last - first).days < DAILY_UP_TO:
        days = [first + timedelta(days=i) for i in range((last - first).days + 2)]
    else:
        days = [first]
        while days[-1] <= last:
            d = days[-1]
            days.append(date(d.year + 1, 1, 1) if d.month == 12 else date(d.year, d.month + 1, 1))
        days[-1] = min(days[-1], last + timedelta(days=1))
    return [wall_to_utc(datetime.combine(d, time(0, 0)), tz=tz).astimezone(UTC) for d in days]


def local_day(instant: datetime) -> date:
    """The local date of a UTC instant."""
    return to_local_wall(instant).date()


def utc_midnights(*days: date) -> list[datetime]:
    """UTC instants of local midnight at the start of each day."""
    tz = local_tz()
    return [wall_to_utc(datetime.combine(d, time(0, 0)), tz=tz).astimezone(UTC) for d in days]
