"""The tree and membership rules the org use cases apply (no reach, audit or events here)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.devices.models import Device
from server.domain import DomainError
from server.orgs.models import OrgUnit, Zone
from server.orgs.tree import subtree_ids
from server.users.models import User


class OrgError(DomainError):
    """An org/zone change that would break the tree or leave orphans; text says why."""

    def __init__(self, detail: str, status: int = 422) -> None:
        super().__init__(status, detail)


def create_org_unit(
    db: Session, *, name: str, kind: str, parent_id: int | None, code: str | None
) -> OrgUnit:
    """Add an org unit under parent_id (None = a new root, e.g. a province)."""
    if parent_id is not None and db.get(OrgUnit, parent_id) is None:
        raise OrgError(f"Parent org unit {parent_id} does not exist.")
    unit = OrgUnit(name=name, kind=kind, parent_id=parent_id, code=code)
    db.add(unit)
    db.flush()
    return unit


def move_org_unit(db: Session, *, unit: OrgUnit, parent_id: int | None) -> None:
    """Re-parent an org unit, refusing cycles."""
    if parent_id is not None:
        if db.get(OrgUnit, parent_id) is None:
            raise OrgError(f"Parent org unit {parent_id} does not exist.")
        if parent_id in subtree_ids(db, root_id=unit.id):
            raise OrgError("An org unit cannot be moved under itself or one of its descendants.")
    unit.parent_id = parent_id


def delete_org_unit(db: Session, *, unit: OrgUnit) -> None:
    """Delete an empty org unit; refuse (409) when anything still hangs off it."""
    checks = (
        (OrgUnit, OrgUnit.parent_id, "child org units"),
        (Zone, Zone.org_unit_id, "zones"),
        (Device, Device.org_unit_id, "devices"),
        (User, User.org_unit_id, "users"),
    )
    for model, column, label in checks:
        count = db.scalar(select(func.count()).select_from(model).where(column == unit.id))
        if count:
            raise OrgError(
                f"{unit.name!r} still has {count} {label}; move or delete them first.", 409
            )
    db.delete(unit)


def set_zone_devices(db: Session, *, zone: Zone, device_ids: list[int]) -> list[Device]:
    """Make the zone contain exactly these devices; returns the devices whose zones changed."""
    allowed = subtree_ids(db, root_id=zone.org_unit_id)
    devices = list(db.scalars(select(Device).where(Device.id.in_(device_ids))))
    missing = set(device_ids) - {d.id for d in devices}
    if missing:
        raise OrgError(f"Unknown device ids: {sorted(missing)}.")
    outside = [d.uid for d in devices if d.org_unit_id not in allowed]
    if outside:
        raise OrgError(
            f"Devices {', '.join(outside)} do not belong to this zone's org unit or below it."
        )
    changed: list[Device] = []
    for device in db.scalars(select(Device).where(Device.zones.any(Zone.id == zone.id))):
        if device.id not in device_ids:
            device.zones.remove(zone)
            changed.append(device)
    for device in devices:
        if zone not in device.zones:
            device.zones.append(zone)
            changed.append(device)
    for device in changed:
        device.state_version += 1  # the zone list is part of the desired state
    return changed


def remove_zone(db: Session, *, zone: Zone) -> list[Device]:
    """Delete a zone; returns the devices that were in it (their desired state changes)."""
    changed = set_zone_devices(db, zone=zone, device_ids=[])
    db.delete(zone)
    return changed


def zone_device_ids(db: Session, *, zone_id: int) -> list[int]:
    """Ids of the devices in a zone."""
    return list(
        db.scalars(
            select(Device.id).where(Device.zones.any(Zone.id == zone_id)).order_by(Device.id)
        )
    )
