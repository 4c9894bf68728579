"""Staff use cases: the queue of one's units, assign, answer, forward, close; categories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.audit import service as audit
from server.domain import DomainError
from server.feedback import broadcast as on_air
from server.feedback.models import (
    ANSWERED,
    ASSIGNED,
    CLOSED,
    FORWARDED,
    NEW,
    OPEN,
    FeedbackCase,
    FeedbackCategory,
    FeedbackStep,
)
from server.settings import ServerSettings
from server.users.models import User


@dataclass(frozen=True)
class Queue:
    """One page of cases and the counts of the whole reach."""

    items: list[FeedbackCase]
    total: int
    new_count: int
    overdue_count: int


def overdue_clause(now: datetime) -> ColumnElement[bool]:
    """Open and past its due date."""
    return and_(FeedbackCase.status.in_(OPEN), FeedbackCase.due_at < now)


def is_overdue(case: FeedbackCase, now: datetime) -> bool:
    """True when the case is open and past its due date."""
    return case.status in OPEN and case.due_at < now


def queue(
    db: Session,
    *,
    actor: Actor,
    now: datetime,
    status: str | None = None,
    overdue: bool | None = None,
    org_unit_id: int | None = None,
    offset: int = 0,
    limit: int = 50,
) -> Queue:
    """Cases of the caller's units, oldest due first."""
    where: list[ColumnElement[bool]] = [reach.reachable(actor, FeedbackCase)]
    if org_unit_id is not None:
        reach.check_org_unit(db, actor, org_unit_id, status=404)
        where.append(FeedbackCase.org_unit_id == org_unit_id)
    counts = select(func.count()).select_from(FeedbackCase).where(*where)
    new_count = int(db.scalar(counts.where(FeedbackCase.status == NEW)) or 0)
    overdue_count = int(db.scalar(counts.where(overdue_clause(now))) or 0)
    if status is not None:
        where.append(FeedbackCase.status == status)
    if overdue is True:
        where.append(overdue_clause(now))
    elif overdue is False:
        where.append(~overdue_clause(now))
    total = int(db.scalar(select(func.count()).select_from(FeedbackCase).where(*where)) or 0)
    rows = db.scalars(
        select(FeedbackCase)
        .where(*where)
        .order_by(FeedbackCase.status == CLOSED, FeedbackCase.due_at, FeedbackCase.id)
        .offset(offset)
        .limit(limit)
    )
    return Queue(list(rows), total, new_count, overdue_count)


def get(db: Session, *, actor: Actor, case_id: int) -> FeedbackCase:
    """One case of the caller's units (404 like a missing one otherwise)."""
    return reach.load(db, actor, FeedbackCase, case_id)


def steps(db: Session, *, case_id: int) -> list[tuple[FeedbackStep, str]]:
    """The case's steps, oldest first, with the user's name."""
    rows = db.execute(
        select(FeedbackStep, User.username)
        .outerjoin(User, User.id == FeedbackStep.user_id)
        .where(FeedbackStep.case_id == case_id)
        .order_by(FeedbackStep.at, FeedbackStep.id)
    ).all()
    return [(step, name or "") for step, name in rows]


def _open(db: Session, actor: Actor, case_id: int) -> FeedbackCase:
    case = get(db, actor=actor, case_id=case_id)
    if case.status == CLOSED:
        raise DomainError(409, "This feedback case is closed. / Phản ánh đã kết thúc.")
    return case


def _step(
    db: Session,
    actor: Actor,
    case: FeedbackCase,
    action: str,
    *,
    now: datetime,
    note: str = "",
    to_org_unit_id: int | None = None,
    **details: Any,
) -> None:
    """The case's own history and the audit log, in the caller's transaction (no personal data)."""
    case.updated_at = now
    db.add(
        FeedbackStep(
            case_id=case.id,
            action=action,
            user_id=actor.user.id,
            to_org_unit_id=to_org_unit_id,
            note=note,
            at=now,
        )
    )
    audit.record(
        db,
        actor=actor,
        action=f"feedback.{action}",
        object_type="feedback_case",
        object_id=case.id,
        org_unit_id=case.org_unit_id,
        summary=f"{case.category_name} · {case.tracking_code}",
        details=details,
        at=now,
    )


def assign(
    db: Session, *, actor: Actor, case_id: int, user_id: int, note: str, now: datetime
) -> FeedbackCase:
    """Give the case to an active user of the caller's units."""
    case = _open(db, actor, case_id)
    reach.check_ids(db, actor, User, [user_id])  # missing and foreign: the same 422
    user = reach.load(db, actor, User, user_id)
    if not user.is_active:
        raise DomainError(422, f"Unknown user id(s): {user_id}.")
    case.assigned_to = user.id
    if case.status in (NEW, FORWARDED):
        case.status = ASSIGNED
    _step(db, actor, case, "assign", now=now, note=note, assigned_to=user.id)
    return case


@dataclass(frozen=True)
class Broadcast:
    """Read the answer on the horns: zones (None: all of the case's unit) and a start."""

    zone_ids: list[int] | None = None
    at: datetime | None = None


def answer(
    db: Session,
    *,
    actor: Actor,
    case_id: int,
    text: str,
    publish: bool,
    now: datetime,
    broadcast: Broadcast | None = None,
    settings: ServerSettings | None = None,
    horizon_days: int = 60,
) -> FeedbackCase:
    """Write (or rewrite) the answer; published, anyone with the tracking code reads it.

    With broadcast, the answer also becomes a programme of the case's unit (spoken by TTS,
    blocking), submitted for approval; the case keeps its id.
    """
    case = _open(db, actor, case_id)
    programme = None
    if broadcast is not None:
        zone_ids, at = on_air.check_request(
            db, actor=actor, case=case, zone_ids=broadcast.zone_ids, at=broadcast.at, now=now
        )
        programme = on_air.broadcast(
            db, actor=actor, case=case, text=text, zone_ids=zone_ids, at=at, now=now,
            settings=settings, horizon_days=horizon_days,
        )  # fmt: skip
        case.programme_id = programme.id
    case.answer = text
    case.answer_public = publish
    case.answered_at = now
    case.status = ANSWERED
    _step(db, actor, case, "answer", now=now, note=text, published=publish,
          broadcast=programme is not None)  # fmt: skip
    if programme is not None:
        _step(
            db, actor, case, "broadcast", now=now, note=programme.title, programme_id=programme.id,
            programme_status=programme.status, start=programme.start.isoformat()
            if programme.start else None, zone_ids=sorted(z.id for z in programme.zones),
        )  # fmt: skip
    return case


def forward(
    db: Session, *, actor: Actor, case_id: int, org_unit_id: int, note: str, now: datetime
) -> FeedbackCase:
    """Hand the case to another unit of the caller's subtree; its assignee is cleared."""
    case = _open(db, actor, case_id)
    reach.check_org_unit(db, actor, org_unit_id)
    if org_unit_id == case.org_unit_id:
        raise DomainError(422, "The case is already with this org unit.")
    _step(
        db, actor, case, "forward", now=now, note=note, to_org_unit_id=org_unit_id,
        from_org_unit_id=case.org_unit_id, to=org_unit_id,
    )  # fmt: skip
    case.org_unit_id = org_unit_id
    case.assigned_to = None
    case.status = FORWARDED
    return case


def close(db: Session, *, actor: Actor, case_id: int, note: str, now: datetime) -> FeedbackCase:
    """Close the case: the retention clock for the citizen's name and phone starts now."""
    case = _open(db, actor, case_id)
    case.status = CLOSED
    case.closed_at = now
    _step(db, actor, case, "close", now=now, note=note)
    return case


# -- categories ------------------------------------------------------------------------------


def categories(
    db: Session, *, actor: Actor, org_unit_id: int | None = None
) -> list[FeedbackCategory]:
    """Categories of the caller's units (of one unit if asked), by name."""
    query = select(FeedbackCategory).where(reach.reachable(actor, FeedbackCategory))
    if org_unit_id is not None:
        reach.check_org_unit(db, actor, org_unit_id, status=404)
        query = query.where(FeedbackCategory.org_unit_id == org_unit_id)
    return list(db.scalars(query.order_by(FeedbackCategory.name, FeedbackCategory.id)))


def _unique(db: Session, *, org_unit_id: int, name: str, except_id: int | None = None) -> None:
    query = select(FeedbackCategory.id).where(
        FeedbackCategory.org_unit_id == org_unit_id,
        func.lower(FeedbackCategory.name) == name.lower(),
    )
    if except_id is not None:
        query = query.where(FeedbackCategory.id != except_id)
    if db.scalar(query.limit(1)) is not None:
        raise DomainError(409, f"This org unit already has a category named {name!r}.")


def _audit_category(db: Session, actor: Actor, action: str, row: FeedbackCategory) -> None:
    audit.record(
        db,
        actor=actor,
        action=action,
        object_type="feedback_category",
        object_id=row.id,
        org_unit_id=row.org_unit_id,
        summary=row.name,
        details={"due_days": row.due_days, "enabled": row.enabled},
    )


def create_category(
    db: Session, *, actor: Actor, org_unit_id: int, name: str, due_days: int, enabled: bool
) -> FeedbackCategory:
    """A new category of a unit in reach."""
    reach.check_org_unit(db, actor, org_unit_id)
    _unique(db, org_unit_id=org_unit_id, name=name)
    row = FeedbackCategory(org_unit_id=org_unit_id, name=name, due_days=due_days, enabled=enabled)
    db.add(row)
    db.flush()
    _audit_category(db, actor, "feedback.category_created", row)
    return row


def update_category(
    db: Session, *, actor: Actor, category_id: int, changes: dict[str, Any]
) -> FeedbackCategory:
    """Change a category; cases already received keep their due date."""
    row = reach.load(db, actor, FeedbackCategory, category_id)
    if changes.get("name") is not None:
        _unique(db, org_unit_id=row.org_unit_id, name=changes["name"], except_id=row.id)
        row.name = changes["name"]
    if changes.get("due_days") is not None:
        row.due_days = changes["due_days"]
    if changes.get("enabled") is not None:
        row.enabled = changes["enabled"]
    _audit_category(db, actor, "feedback.category_changed", row)
    return row
