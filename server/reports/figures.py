"""SQL building blocks of the summary: seconds between two times, reasons, the tree split."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, or_, select
from sqlalchemy.orm import Session

from schedules import occurrences
from server.orgs.models import OrgUnit

# Why a planned item did not play, from the outcome and the device's reason text.
REASONS = ("preempted", "clip_missing", "device_off", "live", "no_slot", "muted", "other")


def seconds_between(db: Session, early: Any, late: Any) -> Any:
    """late - early in seconds, in the database (PostgreSQL or SQLite)."""
    if db.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", late - early)
    return (func.julianday(late) - func.julianday(early)) * 86400.0


def reason_class(outcome: Any, reason: Any) -> ColumnElement[str]:
    """One of REASONS for an item that did not play, '' for one that did."""
    return case(
        (outcome == "played", literal("")),
        (or_(outcome == "preempted", reason.like("%preempt%")), literal("preempted")),
        (reason.like("%clip%"), literal("clip_missing")),
        (reason.like("%not running%"), literal("device_off")),
        (reason.like("%live session%"), literal("live")),
        (reason.like("%slot%"), literal("no_slot")),
        (reason.like("%muted%"), literal("muted")),
        else_=literal("other"),
    )


def child_of_units(db: Session, *, root_id: int) -> dict[int, int | None]:
    """Every org unit of root's subtree -> the child of root it lies under (root -> None)."""
    tree = (
        select(OrgUnit.id.label("id"), OrgUnit.id.label("child"))
        .where(OrgUnit.parent_id == root_id)
        .cte("tree", recursive=True)
    )
    tree = tree.union_all(select(OrgUnit.id, tree.c.child).where(OrgUnit.parent_id == tree.c.id))
    out: dict[int, int | None] = {root_id: None}
    for unit_id, child in db.execute(select(tree.c.id, tree.c.child)):
        out[unit_id] = child
    return out


class OccurrenceCounter:
    """Planned starts of programmes in [since, limit), memoised by identical recurrence."""

    def __init__(self, since: datetime, limit: datetime) -> None:
        self.since, self.limit = since, limit
        self._memo: dict[tuple[Any, ...], int] = {}

    def count(
        self,
        *,
        start: datetime | None,
        rrule: str | None,
        dtstart: datetime | None,
        valid_from: datetime | None,
        valid_until: datetime | None,
    ) -> int:
        """How many planned starts fall in the window (a one-off: 0 or 1)."""
        if self.limit <= self.since:
            return 0
        if rrule is None or dtstart is None:
            if start is None:
                return 0
            inside = self.since <= start < self.limit
            valid = (valid_from is None or start >= valid_from) and (
                valid_until is None or start < valid_until
            )
            return int(inside and valid)
        key = (rrule, dtstart, valid_from, valid_until)
        if key not in self._memo:
            try:
                starts = occurrences(
                    rrule=rrule,
                    dtstart_local=dtstart,
                    window_start=self.since,
                    window_end=self.limit,
                    valid_from=valid_from,
                    valid_until=valid_until,
                )
            except ValueError:
                starts = []  # a rule this version no longer accepts plans nothing
            self._memo[key] = len(starts)
        return self._memo[key]


def nearest_rank(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (p95: share=0.95) of values, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-round(share * 1000) * len(ordered) // 1000))  # ceil(share * n)
    return ordered[min(rank, len(ordered)) - 1]
