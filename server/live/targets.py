"""Which devices a live session reaches, and on which zone topic each one listens."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.devices.models import Device
from server.orgs.models import OrgUnit, Zone, zone_devices
from server.orgs.service import subtree_ids


class TargetError(ValueError):
    """Targets that do not exist or are outside the user's reach; the text says which."""


@dataclass(frozen=True)
class Target:
    """One device and the one zone topic it is told to join (its lowest targeted zone)."""

    uid: str
    zone_id: int
    org_unit_id: int  # the zone's org unit: who may see and stop the session


def resolve_targets(
    db: Session, *, zone_ids: list[int], org_unit_id: int | None, reach: frozenset[int] | None
) -> list[Target]:
    """Devices of the zones (or of every zone under org_unit_id), one zone each."""
    zones: dict[int, Zone] = {}
    if zone_ids:
        found = {z.id: z for z in db.scalars(select(Zone).where(Zone.id.in_(zone_ids)))}
        missing = sorted(set(zone_ids) - set(found))
        if missing:
            raise TargetError(f"No zone with id {', '.join(map(str, missing))}.")
        zones.update(found)
    if org_unit_id is not None:
        if db.get(OrgUnit, org_unit_id) is None:
            raise TargetError(f"Org unit {org_unit_id} does not exist.")
        units = subtree_ids(db, root_id=org_unit_id)
        zones.update({z.id: z for z in db.scalars(select(Zone).where(Zone.org_unit_id.in_(units)))})
    if reach is not None:  # None: a user of the whole system
        outside = sorted(z.id for z in zones.values() if z.org_unit_id not in reach)
        if outside or (org_unit_id is not None and org_unit_id not in reach):
            raise TargetError("You may only broadcast to zones of your own org unit's subtree.")
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
