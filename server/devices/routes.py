"""Devices: registration, credentials, revocation and health, inside the caller's subtree."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import func, select

from server.access import reach
from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import DEVICES_MANAGE, DEVICES_READ
from server.bounds import IdFilter, IdPath, Limit, Offset
from server.broker.pki import ca_pem
from server.deps import Now, SessionDep, SettingsDep
from server.devices import service
from server.devices.display import BoardItem
from server.devices.models import Device
from server.devices.schemas import (
    BoardItemOut,
    Credentials,
    DeviceCreate,
    DeviceDisplayOut,
    DeviceOut,
    DevicePage,
    DeviceRegistered,
    DeviceUpdate,
)
from server.orgs.models import Zone
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
            "power": (device.telemetry or {}).get("power"),
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
    query = select(Device).where(reach.reachable(actor, Device))
    if org_unit_id is not None:
        reach.check_org_unit(db, actor, org_unit_id, status=404)
        query = query.where(Device.org_unit_id == org_unit_id)
    if zone_id is not None:
        reach.load(db, actor, Zone, zone_id)
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
    db: SessionDep, settings: SettingsDep, actor: Manager, body: DeviceCreate
) -> DeviceRegistered:
    """Register a cluster and issue its MQTT credentials (shown only in this answer)."""
    device, password = service.register(db, actor=actor, **body.model_dump())
    return DeviceRegistered(
        device=to_out(device), credentials=_credentials(settings, device, password)
    )


@router.get("/devices/{device_id:int}", response_model=DeviceOut)
def get_device(db: SessionDep, actor: Reader, device_id: IdPath) -> DeviceOut:
    """One device with its health."""
    return to_out(reach.load(db, actor, Device, device_id))


def _board_item(item: BoardItem | None) -> BoardItemOut | None:
    return None if item is None else BoardItemOut.model_validate(item, from_attributes=True)


@router.get("/devices/{device_id:int}/display", response_model=DeviceDisplayOut)
def device_display(db: SessionDep, now: Now, actor: Reader, device_id: IdPath) -> DeviceDisplayOut:
    """What an e-board shows now, from the newest schedule sent to it (which it may not hold)."""
    device, board = service.board(db, actor=actor, device_id=device_id, now=now)
    return DeviceDisplayOut(
        device_id=device.id,
        device_uid=device.uid,
        has_display=board.has_display,
        now=board.now,
        unit_name=board.unit_name,
        showing=_board_item(board.showing),
        next=_board_item(board.next),
        today=[BoardItemOut.model_validate(i, from_attributes=True) for i in board.today],
        emergency=[BoardItemOut.model_validate(i, from_attributes=True) for i in board.emergency],
        schedule_version=board.schedule_version,
        published_at=board.published_at,
        reported_schedule_version=device.reported_schedule_version,
        in_sync=board.schedule_version is not None
        and device.reported_schedule_version == board.schedule_version,
    )


@router.patch("/devices/{device_id:int}", response_model=DeviceOut)
def update_device(
    db: SessionDep, actor: Manager, device_id: IdPath, body: DeviceUpdate
) -> DeviceOut:
    """Change a device's fields; a volume change is pushed as a new desired state."""
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    return to_out(service.update(db, actor=actor, device_id=device_id, changes=changes))


@router.post("/devices/{device_id:int}/credentials", response_model=DeviceRegistered)
def rotate_credentials(
    db: SessionDep, settings: SettingsDep, actor: Manager, device_id: IdPath
) -> DeviceRegistered:
    """Issue a new MQTT password (also re-enables a revoked device)."""
    device, password = service.rotate(db, actor=actor, device_id=device_id)
    return DeviceRegistered(
        device=to_out(device), credentials=_credentials(settings, device, password)
    )


@router.post("/devices/{device_id:int}/revoke", response_model=DeviceOut)
def revoke_device(db: SessionDep, actor: Manager, device_id: IdPath) -> DeviceOut:
    """Withdraw a device's broker access; it is refused at its next connect."""
    return to_out(service.revoke(db, actor=actor, device_id=device_id))
