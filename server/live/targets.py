"""Which devices a live session reaches, and on which zone topic each one listens."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.devices.models import Device
from server.domain import DomainError
from server.orgs.models import Zone, zone_devices
from server.orgs.tree import subtree_ids


class TargetError(DomainError):
    """Targets that name nobody to broadcast to (422); the text says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(422, detail)


@dataclass(frozen=True)
class Target:
    """One device and the one zone topic it is told to join (its lowest targeted zone)."""

    uid: str
    zone_id: int
    org_unit_id: int  # the zone's org unit: who may see and stop the session


def resolve_targets(
    db: Session, *, zone_ids: list[int], org_unit_id: int | None, actor: Actor
) -> list[Target]:
    """Devices of the zones (or of every zone under org_unit_id), one zone each.

    A zone or org unit outside the caller's reach is refused exactly like a missing one
    (the reach loader's DomainError), so the answer never tells which ids exist.
    """
    reach.check_ids(db, actor, Zone, zone_ids)
    zones: dict[int, Zone] = {}
    if zone_ids:
        zones.update({z.id: z for z in db.scalars(select(Zone).where(Zone.id.in_(zone_ids)))})
    if org_unit_id is not None:
        reach.check_org_unit(db, actor, org_unit_id)
        units = subtree_ids(db, root_id=org_unit_id)  # inside reach: reach is a subtree
        zones.update({z.id: z for z in db.scalars(select(Zone).where(Zone.org_unit_id.in_(units)))})
    if not zones:
        raise TargetError("The chosen org unit has no zones: there is nobody to broadcast to.")
    rows = db.execute(
        select(Device.uid, zone_devices.c.zone_id)
        .join(zone_devices, zone_devices.c.device_id == Device.id)
        .where(zone_devices.c.zone_id.in_(list(zones)), Device.revoked_at.is_(None))
        .order_by(Device.uid, zone_devices.c.zone_id)
    ).all()
    lowest: dict[str, int] = {}
    for uid, zone_id in rows:
        lowest.setdefault(uid, zone_id)  # ordered by zone id: the first is the lowest
    return [
        Target(uid, zone_id, zones[zone_id].org_unit_id) for uid, zone_id in sorted(lowest.items())
    ]
