"""Regular broadcast slots of an org unit, and the order of a slot's priority bulletins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import BULLETINS_INBOX, BULLETINS_RECEIVE
from server.bounds import IdPath
from server.bulletins import slot_service
from server.bulletins.models import BulletinDelivery, RegularSlot
from server.bulletins.slot_schemas import PositionIn, SlotItemOut, SlotOut, SlotsIn
from server.deps import Now, SessionDep

router = APIRouter(tags=["bulletins"])
Reader = Annotated[Actor, allow(BULLETINS_INBOX)]
Receiver = Annotated[Actor, allow(BULLETINS_RECEIVE)]


def _item(delivery: BulletinDelivery) -> SlotItemOut:
    assert delivery.programme_id is not None and delivery.slot_position is not None
    assert delivery.first_start is not None
    return SlotItemOut(
        delivery_id=delivery.id,
        bulletin_id=delivery.bulletin_id,
        programme_id=delivery.programme_id,
        slot_position=delivery.slot_position,
        start=delivery.first_start,
        warning=delivery.warning,
    )


@router.get("/org-units/{unit_id:int}/slots", response_model=list[SlotOut])
def list_slots(db: SessionDep, actor: Reader, unit_id: IdPath) -> list[RegularSlot]:
    """The unit's regular broadcast slots (local time), where priority bulletins go."""
    return slot_service.list_slots(db, actor=actor, unit_id=unit_id)


@router.put("/org-units/{unit_id:int}/slots", response_model=list[SlotOut])
def replace_slots(
    db: SessionDep, actor: Receiver, unit_id: IdPath, body: SlotsIn, now: Now
) -> list[RegularSlot]:
    """Replace the unit's regular slots (at most 12; an empty list removes them all)."""
    slots = [(s.start_time, s.weekdays) for s in body.slots]
    return slot_service.replace_slots(db, actor=actor, unit_id=unit_id, slots=slots, now=now)


@router.post("/bulletins/deliveries/{delivery_id:int}/position", response_model=list[SlotItemOut])
def move_delivery(
    db: SessionDep, actor: Receiver, delivery_id: IdPath, body: PositionIn, now: Now
) -> list[SlotItemOut]:
    """Move a priority bulletin within its slot (0 = first); answers the slot's new order."""
    group = slot_service.move_delivery(
        db, actor=actor, delivery_id=delivery_id, position=body.position, now=now
    )
    return [_item(d) for d in group]
