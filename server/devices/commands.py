"""Remote commands (test tone, volume, restart, re-sync) and the acknowledgements devices send."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from protocol import Ack, Command
from server.db import session_scope
from server.devices.models import Device, DeviceCommand
from server.devices.schemas import CommandOut
from server.domain import DomainError

log = logging.getLogger(__name__)

SENT, OK, FAILED, NO_ANSWER = "sent", "ok", "failed", "no_answer"


def command_args(name: str, *, volume: int | None, seconds: float | None) -> dict[str, Any]:
    """A command's arguments: volume for set_volume, seconds for test_tone (3 s unless given)."""
    if name == "set_volume":
        if volume is None:
            raise DomainError(422, "set_volume needs a volume from 0 to 100.")
        return {"volume": volume}
    if volume is not None:
        raise DomainError(422, "volume is only for set_volume.")
    if name == "test_tone":
        return {"seconds": seconds if seconds is not None else 3}
    if seconds is not None:
        raise DomainError(422, "seconds is only for test_tone.")
    return {}


def new_command(
    db: Session,
    *,
    device: Device,
    name: str,
    args: dict[str, Any],
    user_id: int | None,
    now: datetime,
    ttl: timedelta,
) -> tuple[DeviceCommand, Command]:
    """Store a command row and build its wire message (the caller publishes after commit)."""
    row = DeviceCommand(
        id=uuid.uuid4().hex,
        device_id=device.id,
        name=name,
        args=args,
        user_id=user_id,
        created_at=now,
        expires_at=now + ttl,
        status=SENT,
    )
    db.add(row)
    db.flush()
    message = Command.model_validate(
        {"id": row.id, "name": name, "args": args, "expires_at": row.expires_at.timestamp()}
    )
    return row, message


def status_at(row: DeviceCommand, now: datetime) -> str:
    """The command's status as seen now: a sent command past its expiry got no answer."""
    if row.status == SENT and now >= row.expires_at:
        return NO_ANSWER
    return row.status


def command_out(row: DeviceCommand, now: datetime) -> CommandOut:
    """Command row → API shape, with 'no_answer' once an unanswered command expired."""
    return CommandOut(
        id=row.id,
        device_id=row.device_id,
        name=row.name,
        args=dict(row.args or {}),
        user_id=row.user_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        status=status_at(row, now),
        detail=row.detail,
        acked_at=row.acked_at,
    )


def record_ack(db: Session, *, device_uid: str, ack: Ack, now: datetime) -> DeviceCommand | None:
    """Store a device's answer to one of its commands; None for an unknown or foreign id."""
    row = db.scalar(
        select(DeviceCommand)
        .join(Device, Device.id == DeviceCommand.device_id)
        .where(DeviceCommand.id == ack.id, Device.uid == device_uid)
    )
    if row is None:
        log.info("ack %s from %s matches no command of that device", ack.id[:64], device_uid)
        return None
    row.status = OK if ack.ok else FAILED
    row.detail = ack.detail[:500]
    row.acked_at = now
    return row


def ack_recorder(
    session_factory: sessionmaker[Session], clock: Callable[[], datetime]
) -> Callable[[str, Ack], None]:
    """The MqttBridge on_ack callback: store each acknowledgement in its own transaction."""

    def on_ack(device_uid: str, ack: Ack) -> None:
        try:
            with session_scope(session_factory) as db:
                record_ack(db, device_uid=device_uid, ack=ack, now=clock())
        except Exception:  # an ack lost to a database hiccup must not stop the bridge
            log.exception("could not store the ack %s of %s", ack.id[:64], device_uid)

    return on_ack


def recent_commands(db: Session, *, device_id: int, limit: int) -> list[DeviceCommand]:
    """The device's latest commands, newest first."""
    query = (
        select(DeviceCommand)
        .where(DeviceCommand.device_id == device_id)
        .order_by(DeviceCommand.created_at.desc(), DeviceCommand.id)
        .limit(limit)
    )
    return list(db.scalars(query))
