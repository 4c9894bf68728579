"""Use cases for regular slots and for the order of a slot's priority bulletins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.audit import service as audit
from server.bulletins.models import BulletinDelivery, RegularSlot
from server.bulletins.placement import placed_priority, restack, slot_group
from server.bulletins.slots import unit_slots
from server.domain import DomainError
from server.events.outbox import emit
from server.events.types import ReplanNeeded
from server.orgs.models import OrgUnit


def list_slots(db: Session, *, actor: Actor, unit_id: int) -> list[RegularSlot]:
    """The regular slots of an org unit of the caller's subtree."""
    reach.load(db, actor, OrgUnit, unit_id)
    return unit_slots(db, org_unit_id=unit_id)


def replace_slots(
    db: Session, *, actor: Actor, unit_id: int, slots: list[tuple[str, str]], now: datetime
) -> list[RegularSlot]:
    """Replace an org unit's regular slots with `slots` ((HH:MM, weekday digits), checked)."""
    unit = reach.load(db, actor, OrgUnit, unit_id)
    times = [start for start, _days in slots]
    twice = sorted({t for t in times if times.count(t) > 1})
    if twice:
        raise DomainError(
            422, f"The slot at {twice[0]} is given twice: give it once with all its weekdays."
        )
    before = [f"{s.start_time} {s.weekdays}" for s in unit_slots(db, org_unit_id=unit_id)]
    db.execute(delete(RegularSlot).where(RegularSlot.org_unit_id == unit_id))
    for start, days in slots:
        db.add(RegularSlot(org_unit_id=unit_id, start_time=start, weekdays=days, created_at=now))
    db.flush()
    stored = unit_slots(db, org_unit_id=unit_id)
    audit.record(
        db,
        actor=actor,
        action="bulletin.slots",
        object_type="org_unit",
        object_id=unit_id,
        org_unit_id=unit_id,
        summary=unit.name,
        details={"before": before, "after": [f"{s.start_time} {s.weekdays}" for s in stored]},
    )
    return stored


def move_delivery(
    db: Session, *, actor: Actor, delivery_id: int, position: int, now: datetime
) -> list[BulletinDelivery]:
    """Move a priority bulletin to `position` among its slot's; the slot's order, after."""
    delivery = reach.load(db, actor, BulletinDelivery, delivery_id)
    found = placed_priority(db, delivery=delivery)
    if found is None:
        raise DomainError(
            409, f"Delivery {delivery_id} is not a scheduled priority bulletin: only those "
            "are ordered within their slot.",
        )  # fmt: skip
    bulletin, head = found
    if head <= now:
        raise DomainError(409, "Its slot has already begun: the order can no longer change.")
    group = slot_group(db, org_unit_id=delivery.org_unit_id, head=head)
    before = [d.id for d in group]
    group = [d for d in group if d.id != delivery.id]
    group.insert(min(position, len(group)), delivery)
    restack(db, order=group, head=head, now=now)
    audit.record(
        db,
        actor=actor,
        action="bulletin.reorder",
        object_type="bulletin_delivery",
        object_id=delivery.id,
        org_unit_id=delivery.org_unit_id,
        summary=bulletin.title,
        details={
            "position": delivery.slot_position,
            "before": before,
            "after": [d.id for d in group],
        },
    )
    emit(db, ReplanNeeded(reason=f"bulletin delivery {delivery.id} moved in its slot"))
    return group
