"""The daily self-test a device follows: its nearest org unit up the tree that sets a time."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.orgs.models import OrgUnit
from server.orgs.tree import ancestor_ids

DEFAULT_VOLUME = 30
QUIET_FROM, QUIET_UNTIL = 22, 5  # the horns stay quiet from 22:00 to 05:00 (local time)


@dataclass(frozen=True)
class Schedule:
    """A resolved schedule: the time (None: no daily test), its volume and the unit that set it."""

    daily_at: str | None
    volume: int
    unit_id: int | None


def quiet_hours_problem(daily_at: str) -> str | None:
    """Why an "HH:MM" time may not be used, in plain words; None when it may."""
    hour = int(daily_at[:2])
    if hour >= QUIET_FROM or hour < QUIET_UNTIL:
        return (
            f"The self-test cannot run at {daily_at}: the loudspeakers stay quiet from 22:00"
            " to 05:00 so they wake nobody. Choose a time from 05:00 to 21:59."
        )
    return None


def resolve(db: Session, *, org_unit_id: int, cache: dict[int, Schedule] | None = None) -> Schedule:
    """The schedule of a device in this org unit (cache: per-unit answers of one request)."""
    if cache is not None and org_unit_id in cache:
        return cache[org_unit_id]
    chain = ancestor_ids(db, org_unit_id=org_unit_id)
    rows = {
        row.id: row
        for row in db.execute(
            select(OrgUnit.id, OrgUnit.selftest_daily_at, OrgUnit.selftest_volume).where(
                OrgUnit.id.in_(chain)
            )
        )
    }
    found = Schedule(None, DEFAULT_VOLUME, None)
    for unit_id in chain:
        row = rows.get(unit_id)
        if row is not None and row.selftest_daily_at:
            found = Schedule(row.selftest_daily_at, row.selftest_volume, unit_id)
            break
    else:
        own = rows.get(org_unit_id)
        if own is not None:  # a manual test without a volume plays at the unit's volume
            found = Schedule(None, own.selftest_volume, None)
    if cache is not None:
        cache[org_unit_id] = found
    return found
