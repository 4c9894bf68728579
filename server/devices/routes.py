"""Devices: registration, credentials, revocation and health."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.broker.service import broker_config_changed
from server.deps import CurrentUser, SessionDep, SettingsDep
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


def to_out(device: Device) -> DeviceOut:
    """Device row → API shape."""
    return DeviceOut.model_validate(
        {
            **{c: getattr(device, c) for c in DeviceOut.model_fields if hasattr(Device, c)},
            "zone_ids": [z.id for z in device.zones],
            "revoked": device.revoked_at is not None,
        }
    )


def _device_or_404(db: Session, device_id: int) -> Device:
    device = db.get(Device, device_id)
    if device is None:
        raise HTTPException(404, detail=f"Device {device_id} does not exist.")
    return device


def _credentials(settings: ServerSettings, device: Device, password: str) -> Credentials:
    toml = (
        f'device_id = "{device.uid}"\n'
        f'mqtt_host = "{settings.mqtt_host}"\n'
        f"mqtt_port = {settings.mqtt_port}\n"
        f'mqtt_password = "{password}"\n'
        f'firmware_profile = "{device.firmware_profile}"\n'
    )
    return Credentials(
        username=device.uid,
        password=password,
        mqtt_host=settings.mqtt_host,
        mqtt_port=settings.mqtt_port,
        agent_config_toml=toml,
    )


def _publish_state(request: Request, device: Device) -> None:
    bridge = getattr(request.app.state, "bridge", None)
    if bridge is not None:
        bridge.publish_state(device.uid, service.desired_state(device))


@router.get("/devices", response_model=DevicePage)
def list_devices(
    db: SessionDep,
    _u: CurrentUser,
    org_unit_id: int | None = None,
    zone_id: int | None = None,
    online: bool | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> DevicePage:
    """Devices with their health, filtered and paginated."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise HTTPException(422, detail="limit must be 1-1000 and offset must not be negative.")
    query = select(Device)
    if org_unit_id is not None:
        query = query.where(Device.org_unit_id == org_unit_id)
    if zone_id is not None:
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
    db: SessionDep, request: Request, settings: SettingsDep, _u: CurrentUser, body: DeviceCreate
) -> DeviceRegistered:
    """Register a cluster and issue its MQTT credentials (shown only in this answer)."""
    try:
        device, password = service.register_device(db, **body.model_dump())
    except service.DeviceError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    broker_config_changed(request.app, db)
    _publish_state(request, device)
    request_replan(request.app)
    return DeviceRegistered(
        device=to_out(device), credentials=_credentials(settings, device, password)
    )


@router.get("/devices/{device_id}", response_model=DeviceOut)
def get_device(db: SessionDep, _u: CurrentUser, device_id: int) -> DeviceOut:
    """One device with its health."""
    return to_out(_device_or_404(db, device_id))


@router.patch("/devices/{device_id}", response_model=DeviceOut)
def update_device(
    db: SessionDep, request: Request, _u: CurrentUser, device_id: int, body: DeviceUpdate
) -> DeviceOut:
    """Change a device's fields; a volume change is pushed as a new desired state."""
    device = _device_or_404(db, device_id)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    try:
        state_changed = service.update_device(db, device=device, changes=changes)
    except service.DeviceError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    db.commit()
    if state_changed:
        _publish_state(request, device)
    return to_out(device)


@router.post("/devices/{device_id}/credentials", response_model=DeviceRegistered)
def rotate_credentials(
    db: SessionDep, request: Request, settings: SettingsDep, _u: CurrentUser, device_id: int
) -> DeviceRegistered:
    """Issue a new MQTT password (also re-enables a revoked device)."""
    device = _device_or_404(db, device_id)
    password = service.rotate_credentials(db, device=device)
    broker_config_changed(request.app, db)
    return DeviceRegistered(
        device=to_out(device), credentials=_credentials(settings, device, password)
    )


@router.post("/devices/{device_id}/revoke", response_model=DeviceOut)
def revoke_device(db: SessionDep, request: Request, _u: CurrentUser, device_id: int) -> DeviceOut:
    """Withdraw a device's broker access; it is refused at its next connect."""
    device = _device_or_404(db, device_id)
    service.revoke_device(db, device=device)
    broker_config_changed(request.app, db)
    request_replan(request.app)
    return to_out(device)
