"""Emitting events inside a use case's transaction; claiming and completing them after commit."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, inspect, or_, select, update
from sqlalchemy.orm import Session

from server.db import utcnow
from server.events.models import OutboxEvent
from server.events.types import DomainEvent, to_payload

PENDING_KEY = "loa_outbox_rows"  # Session.info: rows this session emitted, dispatched on commit
LEASE = timedelta(seconds=30)


def emit(db: Session, *events: DomainEvent) -> None:
    """Record events in the caller's transaction; they leave only once it commits."""
    rows = [OutboxEvent(kind=e.kind, payload=to_payload(e), created_at=utcnow()) for e in events]
    db.add_all(rows)
    db.info.setdefault(PENDING_KEY, []).extend(rows)


def take_committed(db: Session) -> list[int]:
    """Ids of the rows this session emitted and has now committed (forgets them)."""
    rows: list[OutboxEvent] = db.info.pop(PENDING_KEY, [])
    return [row.id for row in rows if row.id is not None]


def forget_pending(db: Session, *, savepoint: bool = False) -> None:
    """The transaction rolled back: its rows are gone, nothing to dispatch.

    After a SAVEPOINT's rollback the rows inserted inside it are transient again (SQLAlchemy
    expunges them) while the outer transaction's rows are still in the session: keep those.
    """
    rows: list[OutboxEvent] = db.info.pop(PENDING_KEY, [])
    if savepoint:
        kept = [row for row in rows if inspect(row).persistent or inspect(row).pending]
        if kept:
            db.info[PENDING_KEY] = kept


def claim(
    db: Session, *, ids: list[int] | None, now: datetime, limit: int = 200
) -> list[OutboxEvent]:
    """Take the lease on these rows (or on any waiting row when ids is None); returns those won."""
    waiting = OutboxEvent.done_at.is_(None) & or_(
        OutboxEvent.claimed_until.is_(None), OutboxEvent.claimed_until < now
    )
    query = select(OutboxEvent.id).where(waiting).order_by(OutboxEvent.id).limit(limit)
    if ids is not None:
        query = query.where(OutboxEvent.id.in_(ids))
    candidates = list(db.scalars(query))
    won: list[int] = []
    for row_id in candidates:
        # One row per UPDATE: the row count says whether this process won it, on any database.
        result = db.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == row_id, waiting)
            .values(claimed_until=now + LEASE, attempts=OutboxEvent.attempts + 1)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            won.append(row_id)
    db.commit()
    if not won:
        return []
    return list(
        db.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(won)).order_by(OutboxEvent.id))
    )


def complete(db: Session, *, ids: list[int], now: datetime) -> None:
    """Mark dispatched rows done (kept a day for the record, then pruned)."""
    if ids:
        db.execute(update(OutboxEvent).where(OutboxEvent.id.in_(ids)).values(done_at=now))
    db.execute(delete(OutboxEvent).where(OutboxEvent.done_at < now - timedelta(days=1)))
    db.commit()
