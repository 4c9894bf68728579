"""Org units (any-depth tree) and zones."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.broker.service import broker_config_changed
from server.deps import CurrentUser, SessionDep
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


def _unit_or_404(db: Session, unit_id: int) -> OrgUnit:
    unit = db.get(OrgUnit, unit_id)
    if unit is None:
        raise HTTPException(404, detail=f"Org unit {unit_id} does not exist.")
    return unit


def _zone_or_404(db: Session, zone_id: int) -> Zone:
    zone = db.get(Zone, zone_id)
    if zone is None:
        raise HTTPException(404, detail=f"Zone {zone_id} does not exist.")
    return zone


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


@router.get("/org-units", response_model=list[OrgUnitOut])
def list_org_units(db: SessionDep, _u: CurrentUser, parent_id: int | None = None) -> list[OrgUnit]:
    """All org units, or the children of parent_id."""
    query = select(OrgUnit).order_by(OrgUnit.id)
    if parent_id is not None:
        query = query.where(OrgUnit.parent_id == parent_id)
    return list(db.scalars(query))


@router.post("/org-units", response_model=OrgUnitOut, status_code=status.HTTP_201_CREATED)
def create_org_unit(db: SessionDep, _u: CurrentUser, body: OrgUnitCreate) -> OrgUnit:
    """Add an org unit."""
    try:
        return service.create_org_unit(db, **body.model_dump())
    except service.OrgError as exc:
        raise HTTPException(422, detail=str(exc)) from None


@router.get("/org-units/{unit_id}", response_model=OrgUnitOut)
def get_org_unit(db: SessionDep, _u: CurrentUser, unit_id: int) -> OrgUnit:
    """One org unit."""
    return _unit_or_404(db, unit_id)


@router.patch("/org-units/{unit_id}", response_model=OrgUnitOut)
def update_org_unit(db: SessionDep, _u: CurrentUser, unit_id: int, body: OrgUnitUpdate) -> OrgUnit:
    """Rename, re-code or move an org unit."""
    unit = _unit_or_404(db, unit_id)
    changes = body.model_dump(exclude_unset=True)
    try:
        if "parent_id" in changes:
            service.move_org_unit(db, unit=unit, parent_id=changes.pop("parent_id"))
    except service.OrgError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    for key, value in changes.items():
        if value is not None:
            setattr(unit, key, value)
    db.flush()
    return unit


@router.delete("/org-units/{unit_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_org_unit(db: SessionDep, _u: CurrentUser, unit_id: int) -> None:
    """Delete an org unit that has nothing left under it."""
    try:
        service.delete_org_unit(db, unit=_unit_or_404(db, unit_id))
    except service.OrgError as exc:
        raise HTTPException(409, detail=str(exc)) from None


@router.get("/zones", response_model=list[ZoneOut])
def list_zones(db: SessionDep, _u: CurrentUser, org_unit_id: int | None = None) -> list[ZoneOut]:
    """All zones, or those of one org unit."""
    query = select(Zone).order_by(Zone.id)
    if org_unit_id is not None:
        query = query.where(Zone.org_unit_id == org_unit_id)
    return [_zone_out(db, z) for z in db.scalars(query)]


@router.post("/zones", response_model=ZoneOut, status_code=status.HTTP_201_CREATED)
def create_zone(db: SessionDep, request: Request, _u: CurrentUser, body: ZoneCreate) -> ZoneOut:
    """Add a zone, optionally with its devices."""
    _unit_or_404(db, body.org_unit_id)
    zone = Zone(org_unit_id=body.org_unit_id, name=body.name, description=body.description)
    db.add(zone)
    db.flush()
    if body.device_ids:
        try:
            changed = service.set_zone_devices(db, zone=zone, device_ids=body.device_ids)
        except service.OrgError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        broker_config_changed(request.app, db)
        _push_states(request, changed)
    return _zone_out(db, zone)


@router.get("/zones/{zone_id}", response_model=ZoneOut)
def get_zone(db: SessionDep, _u: CurrentUser, zone_id: int) -> ZoneOut:
    """One zone with its device ids."""
    return _zone_out(db, _zone_or_404(db, zone_id))


@router.patch("/zones/{zone_id}", response_model=ZoneOut)
def update_zone(db: SessionDep, _u: CurrentUser, zone_id: int, body: ZoneUpdate) -> ZoneOut:
    """Rename or describe a zone."""
    zone = _zone_or_404(db, zone_id)
    for key, value in body.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(zone, key, value)
    db.flush()
    return _zone_out(db, zone)


@router.put("/zones/{zone_id}/devices", response_model=ZoneOut)
def set_zone_devices(
    db: SessionDep, request: Request, _u: CurrentUser, zone_id: int, body: ZoneDevices
) -> ZoneOut:
    """Replace the zone's device membership (updates the broker ACL)."""
    zone = _zone_or_404(db, zone_id)
    try:
        changed = service.set_zone_devices(db, zone=zone, device_ids=body.device_ids)
    except service.OrgError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    broker_config_changed(request.app, db)
    _push_states(request, changed)
    return _zone_out(db, zone)


@router.delete("/zones/{zone_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_zone(db: SessionDep, request: Request, _u: CurrentUser, zone_id: int) -> None:
    """Delete a zone (its devices stay registered)."""
    changed = service.remove_zone(db, zone=_zone_or_404(db, zone_id))
    broker_config_changed(request.app, db)
    _push_states(request, changed)
