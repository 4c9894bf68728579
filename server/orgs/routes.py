"""Org units (any-depth tree) and zones, each caller limited to their own subtree."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import ORGS_READ, ORGS_WRITE
from server.bounds import IdFilter, IdPath
from server.deps import SessionDep
from server.orgs import service
from server.orgs.models import OrgUnit, Zone
from server.orgs.rules import zone_device_ids
from server.orgs.schemas import (
    OrgUnitCreate,
    OrgUnitOut,
    OrgUnitUpdate,
    ZoneCreate,
    ZoneDevices,
    ZoneOut,
    ZoneUpdate,
)

router = APIRouter(tags=["org units and zones"])
Reader = Annotated[Actor, allow(ORGS_READ)]
Writer = Annotated[Actor, allow(ORGS_WRITE)]


def _zone_out(db: Session, zone: Zone) -> ZoneOut:
    return ZoneOut(
        id=zone.id,
        org_unit_id=zone.org_unit_id,
        name=zone.name,
        description=zone.description,
        device_ids=zone_device_ids(db, zone_id=zone.id),
        announcement_mode="duck" if zone.announcement_mode == "duck" else "cut",
        created_at=zone.created_at,
    )


@router.get("/org-units", response_model=list[OrgUnitOut])
def list_org_units(db: SessionDep, actor: Reader, parent_id: IdFilter = None) -> list[OrgUnit]:
    """The org units of your subtree, or the children of parent_id."""
    return service.list_units(db, actor=actor, parent_id=parent_id)


@router.post("/org-units", response_model=OrgUnitOut, status_code=status.HTTP_201_CREATED)
def create_org_unit(db: SessionDep, actor: Writer, body: OrgUnitCreate) -> OrgUnit:
    """Add an org unit under one of yours (a new root: system administrators only)."""
    return service.create_unit(db, actor=actor, **body.model_dump())


@router.get("/org-units/{unit_id:int}", response_model=OrgUnitOut)
def get_org_unit(db: SessionDep, actor: Reader, unit_id: IdPath) -> OrgUnit:
    """One org unit."""
    return reach.load(db, actor, OrgUnit, unit_id)


@router.patch("/org-units/{unit_id:int}", response_model=OrgUnitOut)
def update_org_unit(db: SessionDep, actor: Writer, unit_id: IdPath, body: OrgUnitUpdate) -> OrgUnit:
    """Rename, re-code or move an org unit (inside your subtree)."""
    changes = body.model_dump(exclude_unset=True)
    return service.update_unit(db, actor=actor, unit_id=unit_id, changes=changes)


@router.delete("/org-units/{unit_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_org_unit(db: SessionDep, actor: Writer, unit_id: IdPath) -> None:
    """Delete an org unit that has nothing left under it."""
    service.delete_unit(db, actor=actor, unit_id=unit_id)


@router.get("/zones", response_model=list[ZoneOut])
def list_zones(db: SessionDep, actor: Reader, org_unit_id: IdFilter = None) -> list[ZoneOut]:
    """The zones of your subtree, or those of one org unit."""
    return [_zone_out(db, z) for z in service.list_zones(db, actor=actor, org_unit_id=org_unit_id)]


@router.post("/zones", response_model=ZoneOut, status_code=status.HTTP_201_CREATED)
def create_zone(db: SessionDep, actor: Writer, body: ZoneCreate) -> ZoneOut:
    """Add a zone, optionally with its devices."""
    return _zone_out(db, service.create_zone(db, actor=actor, **body.model_dump()))


@router.get("/zones/{zone_id:int}", response_model=ZoneOut)
def get_zone(db: SessionDep, actor: Reader, zone_id: IdPath) -> ZoneOut:
    """One zone with its device ids."""
    return _zone_out(db, reach.load(db, actor, Zone, zone_id))


@router.patch("/zones/{zone_id:int}", response_model=ZoneOut)
def update_zone(db: SessionDep, actor: Writer, zone_id: IdPath, body: ZoneUpdate) -> ZoneOut:
    """Rename or describe a zone, or set how announcements treat what plays there."""
    changes = body.model_dump(exclude_unset=True)
    return _zone_out(db, service.update_zone(db, actor=actor, zone_id=zone_id, changes=changes))


@router.put("/zones/{zone_id:int}/devices", response_model=ZoneOut)
def set_zone_devices(db: SessionDep, actor: Writer, zone_id: IdPath, body: ZoneDevices) -> ZoneOut:
    """Replace the zone's device membership (updates the broker ACL)."""
    zone = service.set_zone_members(db, actor=actor, zone_id=zone_id, device_ids=body.device_ids)
    return _zone_out(db, zone)


@router.delete("/zones/{zone_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_zone(db: SessionDep, actor: Writer, zone_id: IdPath) -> None:
    """Delete a zone (its devices stay registered)."""
    service.delete_zone(db, actor=actor, zone_id=zone_id)
