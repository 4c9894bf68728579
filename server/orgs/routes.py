"""Org units (any-depth tree) and zones, each caller limited to their own subtree."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import ORGS_READ, ORGS_WRITE
from server.access.reach import check_device_ids, check_org_unit, visible_org_unit, visible_zone
from server.audit import service as audit
from server.bounds import IdFilter, IdPath
from server.broker.service import broker_config_changed
from server.deps import SessionDep
from server.devices.models import Device
from server.devices.service import desired_state
from server.orgs import service
from server.orgs.models import OrgUnit, Zone
from server.orgs.schemas import (
    OrgUnitCreate,
    OrgUnitOut,
    OrgUnitUpdate,
    ZoneCreate,
    ZoneDevices,
    ZoneOut,
    ZoneUpdate,
)
from server.planner import request_replan

router = APIRouter(tags=["org units and zones"])
Reader = Annotated[Actor, allow(ORGS_READ)]
Writer = Annotated[Actor, allow(ORGS_WRITE)]


def _push_states(request: Request, devices: list[Device]) -> None:
    """Publish the new desired state (zone list) of devices whose zones changed; replan."""
    request_replan(request.app)
    bridge = getattr(request.app.state, "bridge", None)
    if bridge is not None:
        for device in devices:
            bridge.publish_state(device.uid, desired_state(device))


def _zone_out(db: Session, zone: Zone) -> ZoneOut:
    return ZoneOut(
        id=zone.id,
        org_unit_id=zone.org_unit_id,
        name=zone.name,
        description=zone.description,
        device_ids=service.zone_device_ids(db, zone_id=zone.id),
        created_at=zone.created_at,
    )


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


@router.get("/org-units", response_model=list[OrgUnitOut])
def list_org_units(db: SessionDep, actor: Reader, parent_id: IdFilter = None) -> list[OrgUnit]:
    """The org units of your subtree, or the children of parent_id."""
    query = select(OrgUnit).where(actor.org_clause(OrgUnit.id)).order_by(OrgUnit.id)
    if parent_id is not None:
        visible_org_unit(db, actor, parent_id)
        query = query.where(OrgUnit.parent_id == parent_id)
    return list(db.scalars(query))


@router.post("/org-units", response_model=OrgUnitOut, status_code=status.HTTP_201_CREATED)
def create_org_unit(db: SessionDep, actor: Writer, body: OrgUnitCreate) -> OrgUnit:
    """Add an org unit under one of yours (a new root: system administrators only)."""
    check_org_unit(db, actor, body.parent_id)
    try:
        unit = service.create_org_unit(db, **body.model_dump())
    except service.OrgError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    _audit_unit(db, actor, "org_unit.create", unit, parent_id=unit.parent_id, kind=unit.kind)
    return unit


@router.get("/org-units/{unit_id:int}", response_model=OrgUnitOut)
def get_org_unit(db: SessionDep, actor: Reader, unit_id: IdPath) -> OrgUnit:
    """One org unit."""
    return visible_org_unit(db, actor, unit_id)


@router.patch("/org-units/{unit_id:int}", response_model=OrgUnitOut)
def update_org_unit(db: SessionDep, actor: Writer, unit_id: IdPath, body: OrgUnitUpdate) -> OrgUnit:
    """Rename, re-code or move an org unit (inside your subtree)."""
    unit = visible_org_unit(db, actor, unit_id)
    changes = body.model_dump(exclude_unset=True)
    try:
        if "parent_id" in changes:
            parent_id = changes.pop("parent_id")
            check_org_unit(db, actor, parent_id)
            service.move_org_unit(db, unit=unit, parent_id=parent_id)
            changes["parent_id"] = parent_id
    except service.OrgError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    for key, value in changes.items():
        if value is not None and key != "parent_id":
            setattr(unit, key, value)
    db.flush()
    _audit_unit(db, actor, "org_unit.update", unit, changes=changes)
    return unit


@router.delete("/org-units/{unit_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_org_unit(db: SessionDep, actor: Writer, unit_id: IdPath) -> None:
    """Delete an org unit that has nothing left under it."""
    unit = visible_org_unit(db, actor, unit_id)
    if unit.id == actor.user.org_unit_id:
        raise HTTPException(409, detail="You cannot delete the org unit you belong to.")
    try:
        service.delete_org_unit(db, unit=unit)
    except service.OrgError as exc:
        raise HTTPException(409, detail=str(exc)) from None
    _audit_unit(db, actor, "org_unit.delete", unit)


@router.get("/zones", response_model=list[ZoneOut])
def list_zones(db: SessionDep, actor: Reader, org_unit_id: IdFilter = None) -> list[ZoneOut]:
    """The zones of your subtree, or those of one org unit."""
    query = select(Zone).where(actor.org_clause(Zone.org_unit_id)).order_by(Zone.id)
    if org_unit_id is not None:
        visible_org_unit(db, actor, org_unit_id)
        query = query.where(Zone.org_unit_id == org_unit_id)
    return [_zone_out(db, z) for z in db.scalars(query)]


@router.post("/zones", response_model=ZoneOut, status_code=status.HTTP_201_CREATED)
def create_zone(db: SessionDep, request: Request, actor: Writer, body: ZoneCreate) -> ZoneOut:
    """Add a zone, optionally with its devices."""
    visible_org_unit(db, actor, body.org_unit_id)
    check_device_ids(db, actor, body.device_ids)
    zone = Zone(org_unit_id=body.org_unit_id, name=body.name, description=body.description)
    db.add(zone)
    db.flush()
    _audit_zone(db, actor, "zone.create", zone, device_ids=body.device_ids)
    if body.device_ids:
        try:
            changed = service.set_zone_devices(db, zone=zone, device_ids=body.device_ids)
        except service.OrgError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        broker_config_changed(request.app, db)
        _push_states(request, changed)
    return _zone_out(db, zone)


@router.get("/zones/{zone_id:int}", response_model=ZoneOut)
def get_zone(db: SessionDep, actor: Reader, zone_id: IdPath) -> ZoneOut:
    """One zone with its device ids."""
    return _zone_out(db, visible_zone(db, actor, zone_id))


@router.patch("/zones/{zone_id:int}", response_model=ZoneOut)
def update_zone(db: SessionDep, actor: Writer, zone_id: IdPath, body: ZoneUpdate) -> ZoneOut:
    """Rename or describe a zone."""
    zone = visible_zone(db, actor, zone_id)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    for key, value in changes.items():
        setattr(zone, key, value)
    db.flush()
    _audit_zone(db, actor, "zone.update", zone, changes=changes)
    return _zone_out(db, zone)


@router.put("/zones/{zone_id:int}/devices", response_model=ZoneOut)
def set_zone_devices(
    db: SessionDep, request: Request, actor: Writer, zone_id: IdPath, body: ZoneDevices
) -> ZoneOut:
    """Replace the zone's device membership (updates the broker ACL)."""
    zone = visible_zone(db, actor, zone_id)
    check_device_ids(db, actor, body.device_ids)
    try:
        changed = service.set_zone_devices(db, zone=zone, device_ids=body.device_ids)
    except service.OrgError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    _audit_zone(db, actor, "zone.set_devices", zone, device_ids=sorted(set(body.device_ids)))
    broker_config_changed(request.app, db)
    _push_states(request, changed)
    return _zone_out(db, zone)


@router.delete("/zones/{zone_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_zone(db: SessionDep, request: Request, actor: Writer, zone_id: IdPath) -> None:
    """Delete a zone (its devices stay registered)."""
    zone = visible_zone(db, actor, zone_id)
    _audit_zone(db, actor, "zone.delete", zone)
    changed = service.remove_zone(db, zone=zone)
    broker_config_changed(request.app, db)
    _push_states(request, changed)
