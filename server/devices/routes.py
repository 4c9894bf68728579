"""Devices: registration, credentials, revocation and health, inside the caller's subtree."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import DEVICES_MANAGE, DEVICES_READ
from server.access.reach import check_org_unit, check_zone_ids, visible_device, visible_zone
from server.audit import service as audit
from server.bounds import IdFilter, IdPath, Limit, Offset
from server.broker.pki import ca_pem
from server.broker.service import broker_config_changed
from server.deps import SessionDep, SettingsDep
from server.devices import service
from server.devices.models import Device
from server.devices.schemas import (
    Credentials,
    DeviceCreate,
    DeviceOut,
    DevicePage,
    DeviceRegistered,
    DeviceUpdate,
)
from server.orgs.models import Zone
from server.planner import request_replan
from server.settings import ServerSettings

router = APIRouter(tags=["devices"])
Reader = Annotated[Actor, allow(DEVICES_READ)]
Manager = Annotated[Actor, allow(DEVICES_MANAGE)]
CA_FILE = "/etc/loa/ca.pem"  # where the Pi installer (edge_agent/install.py) writes ca_pem


def to_out(device: Device) -> DeviceOut:
    """Device row → API shape."""
    return DeviceOut.model_validate(
        {
            **{c: getattr(device, c) for c in DeviceOut.model_fields if hasattr(Device, c)},
            "zone_ids": [z.id for z in device.zones],
            "revoked": device.revoked_at is not None,
        }
    )


def _credentials(settings: ServerSettings, device: Device, password: str) -> Credentials:
    tls_port = settings.mqtt_tls_port or None
    ca = ca_pem(settings) if tls_port else None
    link = (
        f"mqtt_port = {settings.mqtt_port}\n"
        if tls_port is None
        else f"mqtt_port = {tls_port}\ntls = true\n"
        # The installer writes ca_pem to this path; without a CA, the system's CAs verify.
        + (f'tls_ca_file = "{CA_FILE}"\n' if ca is not None else "")
    )
    toml = (
        f'device_id = "{device.uid}"\n'
        f'mqtt_host = "{settings.device_mqtt_host}"\n'
        f"{link}"
        f'mqtt_password = "{password}"\n'
        f'firmware_profile = "{device.firmware_profile}"\n'
    )
    return Credentials(
        username=device.uid,
        password=password,
        mqtt_host=settings.device_mqtt_host,
        mqtt_port=settings.mqtt_port,
        mqtt_tls_port=tls_port,
        ca_pem=ca,
        agent_config_toml=toml,
    )


def _publish_state(request: Request, device: Device) -> None:
    bridge = getattr(request.app.state, "bridge", None)
    if bridge is not None:
        bridge.publish_state(device.uid, service.desired_state(device))


def _audit(db: Session, actor: Actor, action: str, device: Device, **details: object) -> None:
    audit.record(
        db,
        actor=actor,
        action=action,
        object_type="device",
        object_id=device.id,
        org_unit_id=device.org_unit_id,
        summary=device.uid,
        details=details,
    )


@router.get("/devices", response_model=DevicePage)
def list_devices(
    db: SessionDep,
    actor: Reader,
    org_unit_id: IdFilter = None,
    zone_id: IdFilter = None,
    online: bool | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> DevicePage:
    """Devices of your subtree with their health, filtered and paginated."""
    query = select(Device).where(actor.org_clause(Device.org_unit_id))
    if org_unit_id is not None:
        check_org_unit(db, actor, org_unit_id, status=404)
        query = query.where(Device.org_unit_id == org_unit_id)
    if zone_id is not None:
        visible_zone(db, actor, zone_id)
        query = query.where(Device.zones.any(Zone.id == zone_id))
    if online is not None:
        query = query.where(Device.online.is_(online))
    if q:
        pattern = f"%{q}%"
        query = query.where(Device.uid.ilike(pattern) | Device.name.ilike(pattern))
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(query.order_by(Device.uid).limit(limit).offset(offset))
    return DevicePage(items=[to_out(d) for d in rows], total=total)


@router.post("/devices", response_model=DeviceRegistered, status_code=status.HTTP_201_CREATED)
def register_device(
    db: SessionDep, request: Request, settings: SettingsDep, actor: Manager, body: DeviceCreate
) -> DeviceRegistered:
    """Register a cluster and issue its MQTT credentials (shown only in this answer)."""
    check_org_unit(db, actor, body.org_unit_id)
    check_zone_ids(db, actor, body.zone_ids)
    try:
        device, password = service.register_device(db, **body.model_dump())
    except service.DeviceError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    _audit(db, actor, "device.register", device, name=device.name, zone_ids=body.zone_ids)
    broker_config_changed(request.app, db)
    _publish_state(request, device)
    request_replan(request.app)
    return DeviceRegistered(
        device=to_out(device), credentials=_credentials(settings, device, password)
    )


@router.get("/devices/{device_id:int}", response_model=DeviceOut)
def get_device(db: SessionDep, actor: Reader, device_id: IdPath) -> DeviceOut:
    """One device with its health."""
    return to_out(visible_device(db, actor, device_id))


@router.patch("/devices/{device_id:int}", response_model=DeviceOut)
def update_device(
    db: SessionDep, request: Request, actor: Manager, device_id: IdPath, body: DeviceUpdate
) -> DeviceOut:
    """Change a device's fields; a volume change is pushed as a new desired state."""
    device = visible_device(db, actor, device_id)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if "org_unit_id" in changes:
        check_org_unit(db, actor, changes["org_unit_id"])
    try:
        state_changed = service.update_device(db, device=device, changes=changes)
    except service.DeviceError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    _audit(db, actor, "device.update", device, changes=changes)
    db.commit()
    if state_changed:
        _publish_state(request, device)
    return to_out(device)


@router.post("/devices/{device_id:int}/credentials", response_model=DeviceRegistered)
def rotate_credentials(
    db: SessionDep, request: Request, settings: SettingsDep, actor: Manager, device_id: IdPath
) -> DeviceRegistered:
    """Issue a new MQTT password (also re-enables a revoked device)."""
    device = visible_device(db, actor, device_id)
    password = service.rotate_credentials(db, device=device)
    _audit(db, actor, "device.rotate_credentials", device)
    broker_config_changed(request.app, db)
    return DeviceRegistered(
        device=to_out(device), credentials=_credentials(settings, device, password)
    )


@router.post("/devices/{device_id:int}/revoke", response_model=DeviceOut)
def revoke_device(db: SessionDep, request: Request, actor: Manager, device_id: IdPath) -> DeviceOut:
    """Withdraw a device's broker access; it is refused at its next connect."""
    device = visible_device(db, actor, device_id)
    service.revoke_device(db, device=device)
    _audit(db, actor, "device.revoke", device)
    broker_config_changed(request.app, db)
    request_replan(request.app)
    return to_out(device)
