"""A commune's regular broadcast slots as instants: the next slot start inside a span."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import as_utc, to_local_wall, wall_to_utc
from server.bulletins.models import RegularSlot

# A weekly pattern repeats after 7 days: a span with no slot in its first 8 local days has none.
_SEARCH_DAYS = 8


def parse_hhmm(text: str) -> time:
    """'05:00' -> time(5, 0); ValueError for anything else."""
    hours, _, minutes = text.partition(":")
    if len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError(f"{text!r} is not a time like 05:00")
    return time(int(hours), int(minutes))


def first_start(
    slots: Iterable[tuple[str, str]], *, after: datetime, until: datetime
) -> datetime | None:
    """The earliest start in [after, until) of slots given as (HH:MM local, ISO weekday digits)."""
    low, high = as_utc(after, field="after"), as_utc(until, field="until")
    pattern = sorted((parse_hhmm(start), days) for start, days in slots)
    if not pattern or low >= high:
        return None
    first_day = to_local_wall(low).date()
    last_day = min(to_local_wall(high).date(), first_day + timedelta(days=_SEARCH_DAYS))
    day = first_day
    while day <= last_day:
        weekday = str(day.isoweekday())
        for at, days in pattern:
            if weekday not in days:
                continue
            instant = wall_to_utc(datetime.combine(day, at))
            if low <= instant < high:
                return instant
        day += timedelta(days=1)
    return None


def unit_slots(db: Session, *, org_unit_id: int) -> list[RegularSlot]:
    """The slots of one org unit, in time order."""
    query = (
        select(RegularSlot)
        .where(RegularSlot.org_unit_id == org_unit_id)
        .order_by(RegularSlot.start_time, RegularSlot.id)
    )
    return list(db.scalars(query))


def next_slot_start(
    db: Session, *, org_unit_id: int, after: datetime, until: datetime
) -> datetime | None:
    """The commune's first regular slot start at or after `after` and before `until` (UTC)."""
    slots = [(s.start_time, s.weekdays) for s in unit_slots(db, org_unit_id=org_unit_id)]
    return first_start(slots, after=after, until=until)
