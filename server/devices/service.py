"""Device use cases (register, update, re-key, revoke, command), their rules, and health ingest."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from firmware_profiles import ProfileError, load_profile
from protocol import Birth, DesiredState, Offline, Telemetry, TopicError, check_device_id
from server.access import reach
from server.access.actor import Actor
from server.audit import service as audit
from server.broker.render import mosquitto_hash
from server.db import utcnow
from server.devices import commands
from server.devices.display import Board, board_of
from server.devices.models import Device, DeviceCommand
from server.domain import DomainError
from server.events.outbox import emit
from server.events.types import AclChanged, DesiredStateChanged, ReplanNeeded, command_issued
from server.orgs.models import OrgUnit, Zone
from server.planner.compile import latest_schedule
from server.reports.presence import record_transition
from server.selftest.schedule import DEFAULT_VOLUME, resolve


class DeviceError(DomainError):
    """A device request that cannot be carried out (422); the text says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(422, detail)


def _check_profile(name: str) -> None:
    try:
        load_profile(name)
    except ProfileError as exc:
        raise DeviceError(str(exc)) from None


def register_device(
    db: Session,
    *,
    uid: str,
    name: str,
    org_unit_id: int,
    firmware_profile: str,
    location: str = "",
    zone_ids: list[int] | None = None,
    password: str | None = None,
) -> tuple[Device, str]:
    """Add a device and issue its MQTT credentials; returns (device, plaintext password)."""
    try:
        check_device_id(uid)
    except TopicError as exc:
        raise DeviceError(str(exc)) from None
    if db.scalar(select(Device.id).where(Device.uid == uid)) is not None:
        raise DeviceError(f"A device with id {uid!r} is already registered.")
    if db.get(OrgUnit, org_unit_id) is None:
        raise DeviceError(f"Org unit {org_unit_id} does not exist.")
    _check_profile(firmware_profile)
    password = password or secrets.token_urlsafe(18)
    device = Device(
        uid=uid,
        name=name,
        org_unit_id=org_unit_id,
        firmware_profile=firmware_profile,
        location=location,
        mqtt_password_hash=mosquitto_hash(password),
        state_version=1,
        volume=load_profile(firmware_profile).volume.default,
    )
    if zone_ids:
        zones = list(db.scalars(select(Zone).where(Zone.id.in_(zone_ids))))
        if len(zones) != len(set(zone_ids)):
            raise DeviceError(f"Unknown zone ids in {sorted(set(zone_ids))}.")
        device.zones = zones
    db.add(device)
    db.flush()
    return device, password


def rotate_credentials(db: Session, *, device: Device) -> str:
    """Issue a new MQTT password (the old one stops working at the next broker reload)."""
    password = secrets.token_urlsafe(18)
    device.mqtt_password_hash = mosquitto_hash(password)
    device.revoked_at = None
    return password


def revoke_device(db: Session, *, device: Device) -> None:
    """Withdraw a device's broker access; it is refused at its next connect."""
    device.revoked_at = device.revoked_at or utcnow()


def update_device(db: Session, *, device: Device, changes: dict[str, object]) -> bool:
    """Apply field changes; returns True when the desired state (volume) changed."""
    if "firmware_profile" in changes:
        _check_profile(str(changes["firmware_profile"]))
    if "org_unit_id" in changes and db.get(OrgUnit, changes["org_unit_id"]) is None:
        raise DeviceError(f"Org unit {changes['org_unit_id']} does not exist.")
    state_changed = "volume" in changes and changes["volume"] != device.volume
    for key, value in changes.items():
        setattr(device, key, value)
    if state_changed:
        device.state_version += 1
    return state_changed


def desired_state(device: Device) -> DesiredState:
    """The retained desired-state message for a device (read with the device's session)."""
    # The self-test time comes from the unit tree; every caller holds the device in a session.
    db = object_session(device)
    schedule = resolve(db, org_unit_id=device.org_unit_id) if db is not None else None
    return DesiredState(
        version=max(device.state_version, 1),
        volume=device.volume,
        zone_ids=sorted(z.id for z in device.zones),
        selftest_daily_at=schedule.daily_at if schedule else None,
        selftest_volume=schedule.volume if schedule else DEFAULT_VOLUME,
    )


def by_uid(db: Session, uid: str) -> Device | None:
    """A device by its wire id."""
    return db.scalar(select(Device).where(Device.uid == uid))


def apply_birth(db: Session, *, device: Device, birth: Birth, now: datetime) -> None:
    """A device announced itself: online, with the versions it holds."""
    if not device.online or device.conn_id != birth.conn_id:
        device.online_since = now
    if not device.online:
        record_transition(db, device_id=device.id, online=True, at=now)
    device.online = True
    device.conn_id = birth.conn_id
    device.last_seen = now
    device.agent_version = birth.agent_version
    device.reported_profile = birth.firmware_profile
    device.reported_state_version = birth.state_version
    device.reported_schedule_version = birth.schedule_version


def apply_offline(db: Session, *, device: Device, msg: Offline, now: datetime) -> bool:
    """The broker's will or a clean goodbye; ignored when it belongs to an older connection."""
    if msg.conn_id != device.conn_id:
        return False  # a stale will from a connection the device already replaced
    if device.online:
        record_transition(db, device_id=device.id, online=False, at=now)
    device.online = False
    device.online_since = None
    return True


def apply_telemetry(db: Session, *, device: Device, msg: Telemetry, now: datetime) -> None:
    """Store the latest health sample."""
    device.telemetry = msg.model_dump(exclude={"v", "type"})
    device.telemetry_at = now
    device.last_seen = now
    device.agent_version = msg.agent_version
    device.reported_state_version = msg.state_version
    device.reported_schedule_version = msg.schedule_version


def count_online(db: Session) -> int:
    """How many devices are online now."""
    return db.scalar(select(func.count()).where(Device.online.is_(True))) or 0


# -- use cases: reach, the change, the audit entry and the events (dispatched after commit) ---


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


def register(
    db: Session,
    *,
    actor: Actor,
    uid: str,
    name: str,
    org_unit_id: int,
    firmware_profile: str,
    location: str,
    zone_ids: list[int],
) -> tuple[Device, str]:
    """Register a cluster in the caller's subtree; returns (device, plaintext password)."""
    reach.check_org_unit(db, actor, org_unit_id)
    reach.check_ids(db, actor, Zone, zone_ids)
    device, password = register_device(
        db,
        uid=uid,
        name=name,
        org_unit_id=org_unit_id,
        firmware_profile=firmware_profile,
        location=location,
        zone_ids=zone_ids,
    )
    _audit(db, actor, "device.register", device, name=device.name, zone_ids=zone_ids)
    # Its account first (so it can connect), then its retained state, then its schedule.
    emit(
        db,
        AclChanged(),
        DesiredStateChanged(device_ids=(device.id,)),
        ReplanNeeded(reason=f"device {device.id} registered"),
    )
    return device, password


def update(db: Session, *, actor: Actor, device_id: int, changes: dict[str, Any]) -> Device:
    """Change a device's fields; a volume change becomes a new desired state."""
    device = reach.load(db, actor, Device, device_id)
    if "org_unit_id" in changes:
        reach.check_org_unit(db, actor, changes["org_unit_id"])
    before = (device.firmware_profile, device.org_unit_id, device.name)
    state_changed = update_device(db, device=device, changes=changes)
    _audit(db, actor, "device.update", device, changes=changes)
    if state_changed:
        emit(db, DesiredStateChanged(device_ids=(device.id,)))
    if before != (device.firmware_profile, device.org_unit_id, device.name):
        # A screen gained or lost, or another unit to name: the e-board's content changes.
        emit(db, ReplanNeeded(reason=f"device {device.id} profile or unit changed"))
    return device


def rotate(db: Session, *, actor: Actor, device_id: int) -> tuple[Device, str]:
    """Issue a new MQTT password (re-enables a revoked device); returns (device, password)."""
    device = reach.load(db, actor, Device, device_id)
    password = rotate_credentials(db, device=device)
    _audit(db, actor, "device.rotate_credentials", device)
    emit(db, AclChanged())
    return device, password


def revoke(db: Session, *, actor: Actor, device_id: int) -> Device:
    """Withdraw a device's broker access; it is refused at its next connect."""
    device = reach.load(db, actor, Device, device_id)
    revoke_device(db, device=device)
    _audit(db, actor, "device.revoke", device)
    emit(db, AclChanged(), ReplanNeeded(reason=f"device {device.id} revoked"))
    return device


def send_command(
    db: Session,
    *,
    actor: Actor,
    device_id: int,
    name: str,
    volume: int | None,
    seconds: float | None,
    mqtt_on: bool,
    now: datetime,
    ttl: timedelta,
) -> DeviceCommand:
    """Store a command for a device; it is published once stored (before any ack can arrive)."""
    device = reach.load(db, actor, Device, device_id)
    if not mqtt_on:
        raise DomainError(503, "This server has no MQTT connection; commands are off.")
    args = commands.command_args(name, volume=volume, seconds=seconds)
    return issue_command(db, actor=actor, device=device, name=name, args=args, now=now, ttl=ttl)


def issue_command(
    db: Session,
    *,
    actor: Actor,
    device: Device,
    name: str,
    args: dict[str, Any],
    now: datetime,
    ttl: timedelta,
) -> DeviceCommand:
    """Store and audit a command for a reached device; published once the transaction commits."""
    row, message = commands.new_command(
        db, device=device, name=name, args=args, user_id=actor.user.id, now=now, ttl=ttl
    )
    audit.record(
        db,
        actor=actor,
        action="device.command",
        object_type="device",
        object_id=device.id,
        org_unit_id=device.org_unit_id,
        summary=f"{name} → {device.uid}",
        details={"command_id": row.id, "args": row.args},
    )
    emit(db, command_issued(device.uid, message))
    return row


def board(db: Session, *, actor: Actor, device_id: int, now: datetime) -> tuple[Device, Board]:
    """A device of the caller's subtree and what its screen shows now (an e-board's content)."""
    device = reach.load(db, actor, Device, device_id)
    row = latest_schedule(db, device_id=device.id)
    return device, board_of(db, device=device, row=row, now=now)
