"""Monthly sums of proof of play, so a year's report reads thousands of rows, not millions.

refresh() sums every play_events row above the watermark that is older than SETTLE (so a
batch still being committed is never skipped: ids are taken in order, committed nearly so)
into play_rollups, in the caller's transaction, holding the state row's lock meanwhile.
Readers take whole local months inside their window from play_rollups and everything else
(edge days, rows above the watermark) raw from play_events.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, insert, select
from sqlalchemy.orm import Session

from server.devices.models import Device
from server.plays.models import PlayRecord
from server.reports import figures
from server.reports.models import PlayRollup, PlayRollupState

SETTLE = timedelta(minutes=10)
ON_TIME_S = 1.0  # played on time: started within a second of its planned start


def local_month(db: Session, column: Any) -> Any:
    """'YYYY-MM' of a UTC time column in Vietnam (UTC+7 all year since 1975)."""
    if db.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("Asia/Ho_Chi_Minh", column), "YYYY-MM")
    return func.strftime("%Y-%m", column, "+7 hours")


KEYS = 6  # unit, programme, priority, outcome, reason, relay mode: the grouping columns


def _columns(db: Session) -> list[Any]:
    """The KEYS, then count, on time, seconds played, relayed, fallback, silent."""
    p = PlayRecord
    late = figures.seconds_between(db, p.planned_start, p.actual_start)
    on_time = (p.outcome == "played") & (func.abs(late) <= ON_TIME_S)
    played = figures.seconds_between(db, p.actual_start, p.ended_at)
    return [
        Device.org_unit_id,
        p.programme_id,
        p.priority,
        p.outcome,
        figures.reason_class(p.outcome, p.reason),
        p.relay_mode,
        func.count(),
        func.count().filter(on_time),
        func.coalesce(func.sum(played), 0.0),
        func.coalesce(func.sum(p.relayed_s), 0.0),
        func.coalesce(func.sum(p.fallback_s), 0.0),
        func.coalesce(func.sum(p.silent_s), 0.0),
    ]


def _grouped(db: Session, *extra: Any) -> Select[Any]:
    cols = [*extra, *_columns(db)]
    keys = [*extra, *cols[len(extra) : len(extra) + KEYS]]
    return select(*cols).join(Device, Device.id == PlayRecord.device_id).group_by(*keys)


def refresh(db: Session, *, now: datetime) -> int:
    """Sum settled rows above the watermark; returns the new watermark."""
    state = db.scalar(select(PlayRollupState).where(PlayRollupState.id == 1).with_for_update())
    if state is None:
        state = PlayRollupState(id=1, last_id=0)
        db.add(state)
        db.flush()
    low = state.last_id
    fresh = db.scalar(
        select(func.min(PlayRecord.id)).where(
            PlayRecord.id > low, PlayRecord.received_at >= now - SETTLE
        )
    )
    high = db.scalar(select(func.max(PlayRecord.id)).where(PlayRecord.id > low))
    if high is None:
        return low
    if fresh is not None:
        high = fresh - 1
    if high <= low:
        return low
    month = local_month(db, PlayRecord.planned_start)
    rows = _grouped(db, month).where(PlayRecord.id > low, PlayRecord.id <= high)
    target = [
        PlayRollup.month,
        PlayRollup.org_unit_id,
        PlayRollup.programme_id,
        PlayRollup.priority,
        PlayRollup.outcome,
        PlayRollup.reason,
        PlayRollup.relay_mode,
        PlayRollup.n,
        PlayRollup.on_time,
        PlayRollup.played_s,
        PlayRollup.relayed_s,
        PlayRollup.fallback_s,
        PlayRollup.silent_s,
    ]
    db.execute(insert(PlayRollup).from_select([c.key for c in target], rows))
    state.last_id = high
    db.flush()
    return high


def whole_months(first: date, last: date) -> tuple[date, date] | None:
    """The first day of the first whole month in first..last and the day after the last one."""
    start = first if first.day == 1 else _next_month(first)
    end = last + timedelta(days=1)
    end = end if end.day == 1 else end.replace(day=1)
    return (start, end) if start < end else None


def _next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def months(start: date, end: date) -> list[str]:
    """'YYYY-MM' of every month from start (a first day) up to end (excluded)."""
    out, day = [], start
    while day < end:
        out.append(f"{day:%Y-%m}")
        day = _next_month(day)
    return out


def play_groups(
    db: Session,
    *,
    units: list[int],
    since: datetime,
    until: datetime,
    covered: tuple[datetime, datetime, list[str]] | None,
    watermark: int,
) -> list[Any]:
    """(KEYS, n, on time, seconds played, relayed, fallback, silent) for the window."""
    p = PlayRecord
    in_window = (p.planned_start >= since) & (p.planned_start < until)
    in_units = Device.org_unit_id.in_(units)
    if covered is None:
        return list(db.execute(_grouped(db).where(in_window, in_units)))
    low, high, names = covered
    out: list[Any] = []
    summed = select(
        PlayRollup.org_unit_id,
        PlayRollup.programme_id,
        PlayRollup.priority,
        PlayRollup.outcome,
        PlayRollup.reason,
        PlayRollup.relay_mode,
        func.sum(PlayRollup.n),
        func.sum(PlayRollup.on_time),
        func.sum(PlayRollup.played_s),
        func.sum(PlayRollup.relayed_s),
        func.sum(PlayRollup.fallback_s),
        func.sum(PlayRollup.silent_s),
    ).where(PlayRollup.month.in_(names), PlayRollup.org_unit_id.in_(units))
    out += db.execute(
        summed.group_by(
            PlayRollup.org_unit_id,
            PlayRollup.programme_id,
            PlayRollup.priority,
            PlayRollup.outcome,
            PlayRollup.reason,
            PlayRollup.relay_mode,
        )
    ).all()
    # Rows not in the sums: newer than the watermark, or in the partial months at the edges.
    out += db.execute(_grouped(db).where(in_window, in_units, p.id > watermark)).all()
    for edge in ((since, low), (high, until)):
        if edge[0] < edge[1]:
            part = (p.planned_start >= edge[0]) & (p.planned_start < edge[1])
            out += db.execute(_grouped(db).where(part, in_units, p.id <= watermark)).all()
    return out
