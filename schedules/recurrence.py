"""RFC 5545 recurrence (RRULE) evaluated in local wall-clock time with python-dateutil."""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from dateutil.rrule import rrule as DateutilRule
from dateutil.rrule import rrulestr

from schedules.tz import as_utc, local_tz, to_local_wall, wall_to_utc


@dataclass(frozen=True, slots=True)
class RecurrencePreset:
    """A named, ready-made rule with labels for the operator console."""

    key: str
    rrule: str
    label_vi: str
    label_en: str


PRESETS: Mapping[str, RecurrencePreset] = MappingProxyType(
    {
        preset.key: preset
        for preset in (
            RecurrencePreset(
                "daily_0500_1700",
                "FREQ=DAILY;BYHOUR=5,17;BYMINUTE=0;BYSECOND=0",
                "Hằng ngày 05:00 và 17:00",
                "Every day at 05:00 and 17:00",
            ),
            RecurrencePreset(
                "mon_sat_0500_1700",
                "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5,17;BYMINUTE=0;BYSECOND=0",
                "Thứ Hai–Thứ Bảy 05:00 và 17:00",
                "Monday–Saturday at 05:00 and 17:00",
            ),
            RecurrencePreset(
                "daily_0600",
                "FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0",
                "Hằng ngày 06:00",
                "Every day at 06:00",
            ),
            RecurrencePreset(
                "weekly_monday_0700",
                "FREQ=WEEKLY;BYDAY=MO;BYHOUR=7;BYMINUTE=0;BYSECOND=0",
                "Thứ Hai hằng tuần 07:00",
                "Every Monday at 07:00",
            ),
        )
    }
)

_RFC_PARAMETERS = frozenset(
    [
        "FREQ",
        "INTERVAL",
        "COUNT",
        "UNTIL",
        "BYSECOND",
        "BYMINUTE",
        "BYHOUR",
        "BYDAY",
        "BYMONTHDAY",
        "BYYEARDAY",
        "BYWEEKNO",
        "BYMONTH",
        "BYSETPOS",
        "WKST",
    ]
)
_SUPPORTED_FREQS = ("HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_UNTIL_DATE = re.compile(r"^\d{8}$")
_UNTIL_LOCAL = re.compile(r"^\d{8}T\d{6}$")
_UNTIL_UTC = re.compile(r"^\d{8}T\d{6}Z$")
# Local-window margin: wall-clock and UTC differ by at most a day anywhere on Earth.
_WALL_MARGIN = timedelta(days=1)


def _fail(text: str, detail: str) -> ValueError:
    return ValueError(f"invalid recurrence rule {text!r}: {detail}")


def _parse_parts(text: str) -> dict[str, str]:
    """Split a rule into NAME -> VALUE, rejecting anything RFC 5545 would not accept."""
    body = text.strip()
    if "\n" in body or body.upper().startswith(("DTSTART", "EXDATE", "RDATE")):
        raise _fail(text, "give one RRULE line only; the start time is a separate field")
    if body[:6].upper() == "RRULE:":
        body = body[6:]
    if not body:
        raise _fail(text, "the rule is empty")
    parts: dict[str, str] = {}
    for chunk in body.split(";"):
        name, sep, value = chunk.strip().upper().partition("=")
        if not sep or not name or not value:
            raise _fail(text, f"{chunk.strip()!r} is not NAME=VALUE")
        if name not in _RFC_PARAMETERS:
            raise _fail(text, f"unknown parameter {name!r}")
        if name in parts:
            raise _fail(text, f"{name} is given twice")
        parts[name] = value.replace(" ", "")
    return parts


def _check_parts(text: str, parts: dict[str, str]) -> None:
    freq = parts.get("FREQ")
    if freq is None:
        raise _fail(text, "FREQ is required (e.g. FREQ=DAILY)")
    if freq in ("SECONDLY", "MINUTELY"):
        raise _fail(text, f"FREQ={freq} is not supported; a programme repeats at most hourly")
    if freq not in _SUPPORTED_FREQS:
        raise _fail(text, f"FREQ must be one of {', '.join(_SUPPORTED_FREQS)}, not {freq!r}")
    for name in ("INTERVAL", "COUNT"):
        if name in parts and not (parts[name].isdigit() and int(parts[name]) >= 1):
            raise _fail(text, f"{name} must be a whole number of at least 1")
    if "COUNT" in parts and "UNTIL" in parts:
        raise _fail(text, "COUNT and UNTIL cannot both be given")
    until = parts.get("UNTIL")
    if until is not None:
        if not (_UNTIL_DATE.match(until) or _UNTIL_LOCAL.match(until) or _UNTIL_UTC.match(until)):
            raise _fail(text, "UNTIL must look like 20251231, 20251231T170000 or 20251231T100000Z")
        try:
            datetime.strptime(until[:15].rstrip("Z"), "%Y%m%dT%H%M%S" if "T" in until else "%Y%m%d")
        except ValueError:
            raise _fail(text, f"UNTIL {until} is not a real date and time") from None


def normalise_rrule(text: str) -> str:
    """Check a rule's syntax and return it upper-cased without an 'RRULE:' prefix."""
    parts = _parse_parts(text)
    _check_parts(text, parts)
    return ";".join(f"{name}={value}" for name, value in parts.items())


def _dateutil_text(normalised: str, tz: ZoneInfo) -> str:
    """Rewrite UNTIL into local wall time, the frame dateutil evaluates the rule in."""
    parts = dict(chunk.split("=", 1) for chunk in normalised.split(";"))
    until = parts.get("UNTIL")
    if until is not None:
        if _UNTIL_DATE.match(until):
            # A date-only UNTIL means "through that local day", not "until its midnight".
            parts["UNTIL"] = f"{until}T235959"
        elif _UNTIL_UTC.match(until):
            instant = datetime.strptime(until, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            parts["UNTIL"] = to_local_wall(instant, tz=tz).strftime("%Y%m%dT%H%M%S")
    return ";".join(f"{name}={value}" for name, value in parts.items())


@lru_cache(maxsize=8192)
def _build(normalised: str, dtstart_wall: datetime, tz: ZoneInfo) -> DateutilRule:
    try:
        rule = rrulestr(_dateutil_text(normalised, tz), dtstart=dtstart_wall)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _fail(normalised, str(exc)) from None
    assert isinstance(rule, DateutilRule)  # one RRULE line never yields an rruleset
    return rule


def _check_month_days(text: str, parts: dict[str, str]) -> None:
    """Reject day/month pairs that never exist (30 February), which dateutil would spin on."""
    if "BYMONTH" not in parts or "BYMONTHDAY" not in parts:
        return
    try:
        months = [int(m) for m in parts["BYMONTH"].split(",")]
        days = [abs(int(d)) for d in parts["BYMONTHDAY"].split(",")]
    except ValueError:
        return  # dateutil has already rejected malformed numbers
    longest = {m: calendar.monthrange(2024, m)[1] for m in months if 1 <= m <= 12}  # 2024: leap
    if not any(day <= length for day in days for length in longest.values()):
        raise _fail(text, "no month in BYMONTH has the days in BYMONTHDAY (e.g. 30 February)")


@lru_cache(maxsize=8192)
def _validated(normalised: str, dtstart_wall: datetime, tz: ZoneInfo) -> None:
    rule = _build(normalised, dtstart_wall, tz)
    _check_month_days(normalised, dict(c.split("=", 1) for c in normalised.split(";")))
    # Exact check for any other never-matching rule; it only runs for rules that already
    # passed the cheap checks, and it finishes (dateutil stops at year 9999).
    if next(iter(rule), None) is None:
        raise _fail(normalised, "the rule never produces an occurrence on or after its start")


def validate_rrule(text: str, *, dtstart_local: datetime, tz: ZoneInfo | None = None) -> str:
    """Validate a rule against its start; return the normalised text or raise ValueError."""
    normalised = normalise_rrule(text)
    _validated(normalised, to_local_wall(dtstart_local, tz=tz), tz or local_tz())
    return normalised


def _rebased_start(normalised: str, dtstart_wall: datetime, before_wall: datetime) -> datetime:
    """A later start with exactly the same occurrences from `before_wall` on.

    dateutil iterates from DTSTART, so a years-old daily rule costs thousands of steps per
    window. Moving DTSTART forward by whole multiples of INTERVAL periods keeps its time of
    day, weekday and day of month (the defaults dateutil derives from it) and the period
    alignment, so every occurrence after the new start is unchanged. COUNT counts from the
    original start, so counted rules are never moved.
    """
    parts = dict(chunk.split("=", 1) for chunk in normalised.split(";"))
    if "COUNT" in parts or before_wall <= dtstart_wall:
        return dtstart_wall
    interval = int(parts.get("INTERVAL", "1"))
    freq = parts["FREQ"]
    fixed_steps = {
        "HOURLY": timedelta(hours=1),
        "DAILY": timedelta(days=1),
        "WEEKLY": timedelta(weeks=1),
    }
    if freq in fixed_steps:
        step = fixed_steps[freq] * interval
        return dtstart_wall + step * ((before_wall - dtstart_wall) // step)
    if dtstart_wall.day > 28:
        return dtstart_wall  # month arithmetic would change the day of month
    months = interval * (12 if freq == "YEARLY" else 1)
    elapsed = (before_wall.year - dtstart_wall.year) * 12 + before_wall.month - dtstart_wall.month
    steps = max(elapsed // months - 1, 0)
    return dtstart_wall + relativedelta(months=steps * months)


def occurrences(
    *,
    rrule: str,
    dtstart_local: datetime,
    window_start: datetime,
    window_end: datetime,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    tz: ZoneInfo | None = None,
) -> list[datetime]:
    """UTC start times in [window_start, window_end) ∩ [valid_from, valid_until), sorted.

    The rule runs in local wall-clock time (05:00 means 05:00 local every day); a naive
    dtstart_local is local time, an aware one is converted to it.
    """
    zone = tz or local_tz()
    normalised = normalise_rrule(rrule)
    dtstart_wall = to_local_wall(dtstart_local, tz=zone)
    _validated(normalised, dtstart_wall, zone)
    low = as_utc(window_start, field="window_start")
    high = as_utc(window_end, field="window_end")
    if valid_from is not None:
        low = max(low, as_utc(valid_from, field="valid_from"))
    if valid_until is not None:
        high = min(high, as_utc(valid_until, field="valid_until"))
    if low >= high:
        return []
    low_wall = to_local_wall(low, tz=zone) - _WALL_MARGIN
    high_wall = to_local_wall(high, tz=zone) + _WALL_MARGIN
    start = _rebased_start(normalised, dtstart_wall, low_wall)
    rule = _build(normalised, start, zone)
    found = {wall_to_utc(wall, tz=zone) for wall in rule.between(low_wall, high_wall, inc=True)}
    # A set and a sort: around a clock change two wall times can map to one instant,
    # and a skipped wall time maps before the first time after the gap.
    return sorted(instant for instant in found if low <= instant < high)
