"""RelayRun rows: one per scheduled relay the server carries out, its state and its alarm."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.access.actor import Actor
from server.db import utcnow
from server.programmes.models import Programme
from server.relay.models import (
    DEAD_AIR,
    ENDED,
    FAILED,
    RUNNING,
    SCHEDULED,
    RelayRun,
    RelaySource,
)

DONE = (ENDED, FAILED)
RECENT = timedelta(hours=24)


def ensure_run(
    db: Session,
    *,
    session_id: str,
    programme_id: int,
    item_id: str,
    relay_source_id: int,
    org_unit_id: int | None,
    planned_start: datetime,
    planned_end: datetime,
) -> RelayRun:
    """The run of this relay session, created on first sight (idempotent by session_id)."""
    row = db.scalar(select(RelayRun).where(RelayRun.session_id == session_id))
    if row is not None:
        return row
    source = db.get(RelaySource, relay_source_id)  # SET NULL: a removed source is kept as None
    row = RelayRun(
        session_id=session_id,
        programme_id=programme_id,
        item_id=item_id,
        relay_source_id=source.id if source is not None else None,
        org_unit_id=org_unit_id,
        planned_start=planned_start,
        planned_end=planned_end,
        state=SCHEDULED,
        updated_at=utcnow(),
    )
    try:
        with db.begin_nested():
            db.add(row)
    except IntegrityError:  # another pass created it first
        found = db.scalar(select(RelayRun).where(RelayRun.session_id == session_id))
        assert found is not None
        return found
    return row


def _get(db: Session, session_id: str) -> RelayRun:
    row = db.scalar(select(RelayRun).where(RelayRun.session_id == session_id))
    if row is None:
        raise LookupError(f"no relay run {session_id!r}")
    return row


def mark_running(db: Session, *, session_id: str, at: datetime) -> None:
    """The relay's frames started (or were picked up again after a restart)."""
    row = _get(db, session_id)
    if row.state == SCHEDULED:
        row.state = RUNNING
    row.started_at = row.started_at or at
    row.updated_at = at


def raise_alarm(db: Session, *, session_id: str, text: str, since: datetime, at: datetime) -> None:
    """Dead air: the alarm is open from `since` and no frames are sent."""
    row = _get(db, session_id)
    row.state = DEAD_AIR
    row.alarm = text[:300]
    row.alarm_at = since
    row.alarm_cleared_at = None
    row.updated_at = at


def clear_alarm(db: Session, *, session_id: str, at: datetime) -> None:
    """The source is back: frames flow again; the alarm text stays for the record."""
    row = _get(db, session_id)
    if row.state == DEAD_AIR:
        row.state = RUNNING
    row.alarm_cleared_at = at
    row.updated_at = at


def record_progress(
    db: Session, *, session_id: str, frames_sent: int, dead_air_s: float, at: datetime
) -> None:
    """Counters so far (totals over every process that ran this relay)."""
    row = _get(db, session_id)
    row.frames_sent = frames_sent
    row.dead_air_s = round(dead_air_s, 3)
    row.updated_at = at


def finish(
    db: Session,
    *,
    session_id: str,
    frames_sent: int,
    dead_air_s: float,
    failed: bool,
    at: datetime,
) -> str:
    """End the run: `failed` when not one frame of the source's audio was relayed."""
    row = _get(db, session_id)
    row.frames_sent = frames_sent
    row.dead_air_s = round(dead_air_s, 3)
    row.state = FAILED if failed else ENDED
    row.ended_at = at
    row.updated_at = at
    return row.state


@dataclass(frozen=True)
class RunView:
    """A run with the names an operator reads."""

    run: RelayRun
    source_name: str
    programme_title: str

    @property
    def alarm_open(self) -> bool:
        """An alarm raised and not cleared (the relay may have ended since)."""
        return self.run.alarm_at is not None and self.run.alarm_cleared_at is None


def _views(db: Session, rows: list[RelayRun]) -> list[RunView]:
    sids = {r.relay_source_id for r in rows if r.relay_source_id is not None}
    # Not dict(result): a Result has keys() (its column names), so dict() would index it.
    query = select(RelaySource.id, RelaySource.name).where(RelaySource.id.in_(sids))
    sources = {row.id: row.name for row in db.execute(query)}
    pids = {r.programme_id for r in rows if r.programme_id is not None}
    titles = {
        row.id: row.title
        for row in db.execute(select(Programme.id, Programme.title).where(Programme.id.in_(pids)))
    }
    return [
        RunView(
            run=r,
            source_name=sources.get(r.relay_source_id or 0, "?"),
            programme_title=titles.get(r.programme_id or 0, "?"),
        )
        for r in rows
    ]


def list_runs(
    db: Session,
    *,
    actor: Actor,
    since: datetime | None = None,
    alarms_only: bool = False,
    limit: int = 100,
) -> tuple[list[RunView], int]:
    """Runs of the caller's subtree, newest planned start first; and how many match in all."""
    query = select(RelayRun).where(actor.org_clause(RelayRun.org_unit_id))
    if since is not None:
        query = query.where(RelayRun.planned_end >= since)
    if alarms_only:
        query = query.where(RelayRun.alarm_at.is_not(None))
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    query = query.order_by(RelayRun.planned_start.desc(), RelayRun.id.desc()).limit(limit)
    return _views(db, list(db.scalars(query))), total


def dashboard_alarms(
    db: Session, *, actor: Actor, now: datetime
) -> tuple[list[RunView], list[RunView]]:
    """Open dead-air alarms (on air now, or of the last 24 h), and those cleared in 24 h."""
    day_ago = now - RECENT
    query = (
        select(RelayRun)
        .where(
            actor.org_clause(RelayRun.org_unit_id),
            RelayRun.alarm_at.is_not(None),
            or_(
                RelayRun.state == DEAD_AIR,
                RelayRun.alarm_at >= day_ago,
                and_(RelayRun.alarm_cleared_at.is_not(None), RelayRun.alarm_cleared_at >= day_ago),
            ),
        )
        .order_by(RelayRun.alarm_at.desc(), RelayRun.id.desc())
        .limit(100)
    )
    views = _views(db, list(db.scalars(query)))
    return [v for v in views if v.alarm_open], [v for v in views if not v.alarm_open]
