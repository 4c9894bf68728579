"""Citizen feedback figures per unit over a period: received, handled, on time, overdue, speed.

Every case counts at the unit handling it now (a forwarded case moves with it). "Handled" is
the first of its answer and its closing; "overdue" is a snapshot at the end of the period (or
now, if sooner): due before then and neither answered nor closed by then.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.domain import DomainError
from server.feedback.models import FeedbackCase
from server.orgs.models import OrgUnit
from server.reports.figures import child_of_units
from server.reports.schemas import FeedbackFigures, FeedbackReportOut, FeedbackUnitRow

MAX_SPAN = timedelta(days=366)
DEFAULT_SPAN = timedelta(days=30)


@dataclass
class FeedbackAcc:
    """Running feedback figures of one unit (or a total)."""

    received: int = 0
    handled: int = 0
    handled_on_time: int = 0
    overdue_open: int = 0
    answer_hours: list[float] = field(default_factory=list)

    def add(self, other: FeedbackAcc) -> None:
        """Fold another unit's figures into these."""
        self.received += other.received
        self.handled += other.handled
        self.handled_on_time += other.handled_on_time
        self.overdue_open += other.overdue_open
        self.answer_hours.extend(other.answer_hours)

    def figures(self) -> FeedbackFigures:
        """The API shape; the median is None without an answer in the period."""
        median = statistics.median(self.answer_hours) if self.answer_hours else None
        return FeedbackFigures(
            received=self.received,
            handled=self.handled,
            handled_on_time=self.handled_on_time,
            overdue_open=self.overdue_open,
            median_hours_to_answer=round(median, 2) if median is not None else None,
        )


def _handled_at(answered: datetime | None, closed: datetime | None) -> datetime | None:
    marks = [m for m in (answered, closed) if m is not None]
    return min(marks) if marks else None


def per_unit(
    db: Session, *, units: Iterable[int], since: datetime, until: datetime, now: datetime
) -> dict[int, FeedbackAcc]:
    """Each unit's own figures over [since, until) (units without a case are left out)."""
    wanted = list(units)
    end = min(until, now)
    c = FeedbackCase
    unhandled = and_(c.answered_at.is_(None), c.closed_at.is_(None))
    rows = db.execute(
        select(c.org_unit_id, c.created_at, c.due_at, c.answered_at, c.closed_at).where(
            c.org_unit_id.in_(wanted),
            c.created_at < until,
            or_(
                c.created_at >= since,
                c.answered_at >= since,
                c.closed_at >= since,
                unhandled,
                c.answered_at >= end,
                c.closed_at >= end,
            ),
        )
    ).all()
    out: defaultdict[int, FeedbackAcc] = defaultdict(FeedbackAcc)
    for unit, created, due, answered, closed in rows:
        acc = out[unit]
        handled = _handled_at(answered, closed)
        if since <= created < until:
            acc.received += 1
        if handled is not None and since <= handled < until:
            acc.handled += 1
            acc.handled_on_time += int(handled <= due)
        if answered is not None and since <= answered < until:
            acc.answer_hours.append(max(0.0, (answered - created).total_seconds() / 3600))
        if created < end and due < end and (handled is None or handled >= end):
            acc.overdue_open += 1
    return dict(out)


def _window(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise DomainError(422, f"{name} needs a time zone, e.g. 2031-03-01T00:00+07:00.")
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    if not since < until or until - since > MAX_SPAN:
        raise DomainError(422, "since must be before until, at most 366 days apart.")
    return since, until


def feedback_report(
    db: Session,
    *,
    actor: Actor,
    org_unit_id: int,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
) -> FeedbackReportOut:
    """The use case behind GET /reports/feedback: each unit of the subtree and the total."""
    root = reach.load(db, actor, OrgUnit, org_unit_id)  # 404 before a 422 about the period
    until = until or now
    since, until = _window(since or until - DEFAULT_SPAN, until)
    subtree = child_of_units(db, root_id=root.id)
    found = per_unit(db, units=subtree, since=since, until=until, now=now)
    total = FeedbackAcc()
    for acc in found.values():
        total.add(acc)
    names = {
        u.id: u
        for u in db.execute(
            select(OrgUnit.id, OrgUnit.name, OrgUnit.kind).where(OrgUnit.id.in_(found))
        )
    }
    rows = [
        FeedbackUnitRow(
            org_unit_id=unit_id,
            name=names[unit_id].name,
            kind=names[unit_id].kind,
            feedback=found[unit_id].figures(),
        )
        for unit_id in sorted(found, key=lambda i: (i != root.id, names[i].name, i))
    ]
    return FeedbackReportOut(
        org_unit={"id": root.id, "name": root.name, "kind": root.kind},
        since=since,
        until=until,
        generated_at=now.astimezone(UTC),
        rows=rows,
        total=FeedbackUnitRow(
            org_unit_id=root.id, name=root.name, kind=root.kind, feedback=total.figures()
        ),
    )
