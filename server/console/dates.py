"""Dates as Vietnamese write them (dd/mm/yyyy), whatever language the browser runs in.

The console's date fields are plain text fields in this form: a native date input would
show the browser's locale (mm/dd/yyyy and a 12-hour clock in an English browser).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

_DAY = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s*$")
# A new programme's default start: this far ahead, on a quarter hour, never in the past.
LEAD = timedelta(minutes=30)


def parse_day(text: str) -> date:
    """ "31/03/2031" (or ISO "2031-03-31", as older links carry) -> a date; ValueError."""
    found = _DAY.match(text)
    if found:
        day, month, year = (int(g) for g in found.groups())
        return date(year, month, day)
    return date.fromisoformat(text.strip())


def day_text(value: date | None) -> str:
    """A date as dd/mm/yyyy ('' for None)."""
    return "" if value is None else f"{value:%d/%m/%Y}"


def default_start(now_local: datetime) -> datetime:
    """The next quarter hour at least LEAD from now (local wall time)."""
    start = now_local.replace(second=0, microsecond=0) + LEAD
    return start + timedelta(minutes=(-start.minute) % 15)
