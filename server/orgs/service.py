"""Org-unit and zone use cases: each checks reach, applies the rules, audits and emits events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.audit import service as audit
from server.devices.models import Device
from server.domain import DomainError
from server.events.outbox import emit
from server.events.types import AclChanged, DesiredStateChanged, DomainEvent, ReplanNeeded
from server.orgs import rules
from server.orgs.models import OrgUnit, Zone


def _audit_unit(db: Session, actor: Actor, action: str, unit: OrgUnit, **details: object) -> None:
    audit.record(
        db,
        actor=actor,
        action=action,
        object_type="org_unit",
        object_id=unit.id,
        org_unit_id=unit.id if action != "org_unit.delete" else unit.parent_id,
        summary=unit.name,
        details=details,
    )


def _audit_zone(db: Session, actor: Actor, action: str, zone: Zone, **details: object) -> None:
    audit.record(
        db,
        actor=actor,
        action=action,
        object_type="zone",
        object_id=zone.id,
        org_unit_id=zone.org_unit_id,
        summary=zone.name,
        details=details,
    )


def _members_changed(db: Session, zone: Zone, changed: list[Device], why: str) -> None:
    """Zone membership is in the broker ACL, the devices' desired state and their schedules."""
    events: list[DomainEvent] = [AclChanged()]
    if changed:
        events.append(DesiredStateChanged(device_ids=tuple(sorted({d.id for d in changed}))))
    events.append(ReplanNeeded(reason=f"zone {zone.id} {why}"))
    emit(db, *events)


def list_units(db: Session, *, actor: Actor, parent_id: int | None) -> list[OrgUnit]:
    """The org units of the caller's subtree, or the children of parent_id."""
    query = select(OrgUnit).where(reach.reachable(actor, OrgUnit)).order_by(OrgUnit.id)
    if parent_id is not None:
        reach.load(db, actor, OrgUnit, parent_id)
        query = query.where(OrgUnit.parent_id == parent_id)
    return list(db.scalars(query))


def create_unit(
    db: Session, *, actor: Actor, name: str, kind: str, parent_id: int | None, code: str | None
) -> OrgUnit:
    """Add an org unit under one of the caller's (a new root: system administrators only)."""
    reach.check_org_unit(db, actor, parent_id)
    unit = rules.create_org_unit(db, name=name, kind=kind, parent_id=parent_id, code=code)
    _audit_unit(db, actor, "org_unit.create", unit, parent_id=unit.parent_id, kind=unit.kind)
    return unit


def update_unit(db: Session, *, actor: Actor, unit_id: int, changes: dict[str, Any]) -> OrgUnit:
    """Rename, re-code or move (parent_id) an org unit inside the caller's subtree."""
    unit = reach.load(db, actor, OrgUnit, unit_id)
    changes = dict(changes)  # the audit entry lists the move last, as it always has
    if "parent_id" in changes:
        parent_id = changes.pop("parent_id")
        reach.check_org_unit(db, actor, parent_id)
        rules.move_org_unit(db, unit=unit, parent_id=parent_id)
        changes["parent_id"] = parent_id
    for key, value in changes.items():
        if value is not None and key != "parent_id":
            setattr(unit, key, value)
    db.flush()
    _audit_unit(db, actor, "org_unit.update", unit, changes=changes)
    return unit


def delete_unit(db: Session, *, actor: Actor, unit_id: int) -> None:
    """Delete an org unit of the caller's subtree that has nothing left under it."""
    unit = reach.load(db, actor, OrgUnit, unit_id)
    if unit.id == actor.user.org_unit_id:
        raise DomainError(409, "You cannot delete the org unit you belong to.")
    rules.delete_org_unit(db, unit=unit)
    _audit_unit(db, actor, "org_unit.delete", unit)


def list_zones(db: Session, *, actor: Actor, org_unit_id: int | None) -> list[Zone]:
    """The zones of the caller's subtree, or those of one org unit."""
    query = select(Zone).where(reach.reachable(actor, Zone)).order_by(Zone.id)
    if org_unit_id is not None:
        reach.load(db, actor, OrgUnit, org_unit_id)
        query = query.where(Zone.org_unit_id == org_unit_id)
    return list(db.scalars(query))


def create_zone(
    db: Session,
    *,
    actor: Actor,
    org_unit_id: int,
    name: str,
    description: str,
    device_ids: list[int],
    announcement_mode: str = "cut",
) -> Zone:
    """Add a zone to an org unit of the caller's subtree, optionally with its devices."""
    reach.load(db, actor, OrgUnit, org_unit_id)
    reach.check_ids(db, actor, Device, device_ids)
    _check_mode(announcement_mode)
    zone = Zone(
        org_unit_id=org_unit_id,
        name=name,
        description=description,
        announcement_mode=announcement_mode,
    )
    db.add(zone)
    db.flush()
    _audit_zone(db, actor, "zone.create", zone, device_ids=device_ids)
    if device_ids:
        changed = rules.set_zone_devices(db, zone=zone, device_ids=device_ids)
        _members_changed(db, zone, changed, "created with devices")
    return zone


def update_zone(db: Session, *, actor: Actor, zone_id: int, changes: dict[str, Any]) -> Zone:
    """Rename or describe a zone of the caller's subtree (membership: set_zone_members)."""
    zone = reach.load(db, actor, Zone, zone_id)
    changes = {k: v for k, v in changes.items() if v is not None}
    mode_was = zone.announcement_mode
    if "announcement_mode" in changes:
        _check_mode(changes["announcement_mode"])
    for key, value in changes.items():
        setattr(zone, key, value)
    db.flush()
    _audit_zone(db, actor, "zone.update", zone, changes=changes)
    if zone.announcement_mode != mode_was:
        # Programmes without a mode of their own follow their zones': their items change.
        emit(db, ReplanNeeded(reason=f"zone {zone.id} announcement mode"))
    return zone


def _check_mode(mode: object) -> None:
    if mode not in ("cut", "duck"):
        raise DomainError(422, "announcement_mode must be cut or duck.")


def set_zone_members(db: Session, *, actor: Actor, zone_id: int, device_ids: list[int]) -> Zone:
    """Replace a zone's devices; the broker ACL, desired states and schedules follow."""
    zone = reach.load(db, actor, Zone, zone_id)
    reach.check_ids(db, actor, Device, device_ids)
    changed = rules.set_zone_devices(db, zone=zone, device_ids=device_ids)
    _audit_zone(db, actor, "zone.set_devices", zone, device_ids=sorted(set(device_ids)))
    _members_changed(db, zone, changed, "devices changed")
    return zone


def delete_zone(db: Session, *, actor: Actor, zone_id: int) -> None:
    """Delete a zone of the caller's subtree (its devices stay registered)."""
    zone = reach.load(db, actor, Zone, zone_id)
    _audit_zone(db, actor, "zone.delete", zone)
    changed = rules.remove_zone(db, zone=zone)
    _members_changed(db, zone, changed, "deleted")
