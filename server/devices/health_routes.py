"""A device's telemetry history and remote commands with their acknowledgements."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, status

from protocol import TopicKind
from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import DEVICES_COMMAND, DEVICES_READ
from server.access.reach import visible_device
from server.audit import service as audit
from server.bounds import IdPath, When, page_limit
from server.db import utcnow
from server.deps import SessionDep, SettingsDep
from server.devices import commands, telemetry
from server.devices.models import DeviceCommand
from server.devices.schemas import CommandCreate, CommandOut, TelemetryHistory, TelemetryPoint

router = APIRouter(tags=["devices"])
MAX_SPAN = timedelta(days=31)


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
        status=commands.status_at(row, now),
        detail=row.detail,
        acked_at=row.acked_at,
    )


def _args(body: CommandCreate) -> dict[str, Any]:
    if body.name == "set_volume":
        if body.volume is None:
            raise HTTPException(422, detail="set_volume needs a volume from 0 to 100.")
        return {"volume": body.volume}
    if body.volume is not None:
        raise HTTPException(422, detail="volume is only for set_volume.")
    if body.name == "test_tone":
        return {"seconds": body.seconds if body.seconds is not None else 3}
    if body.seconds is not None:
        raise HTTPException(422, detail="seconds is only for test_tone.")
    return {}


@router.post(
    "/devices/{device_id:int}/commands",
    response_model=CommandOut,
    status_code=status.HTTP_202_ACCEPTED,
)
def send_command(
    db: SessionDep,
    request: Request,
    settings: SettingsDep,
    actor: Annotated[Actor, allow(DEVICES_COMMAND)],
    device_id: IdPath,
    body: CommandCreate,
) -> CommandOut:
    """Send a command now; the device's acknowledgement shows up in the command list."""
    device = visible_device(db, actor, device_id)
    bridge = getattr(request.app.state, "bridge", None)
    if bridge is None:
        raise HTTPException(503, detail="This server has no MQTT connection; commands are off.")
    now = utcnow()
    row, message = commands.new_command(
        db,
        device=device,
        name=body.name,
        args=_args(body),
        user_id=actor.user.id,
        now=now,
        ttl=timedelta(seconds=settings.command_ttl_s),
    )
    audit.record(
        db,
        actor=actor,
        action="device.command",
        object_type="device",
        object_id=device.id,
        org_unit_id=device.org_unit_id,
        summary=f"{body.name} → {device.uid}",
        details={"command_id": row.id, "args": row.args},
    )
    db.commit()  # stored before the ack can arrive
    bridge.publish(TopicKind.COMMAND, device.uid, message)
    return command_out(row, now)


@router.get("/devices/{device_id:int}/commands", response_model=list[CommandOut])
def list_commands(
    db: SessionDep,
    actor: Annotated[Actor, allow(DEVICES_READ)],
    device_id: IdPath,
    limit: Annotated[int, page_limit(200)] = 20,
) -> list[CommandOut]:
    """The device's latest commands and their acknowledgements, newest first."""
    device = visible_device(db, actor, device_id)
    now = utcnow()
    return [command_out(r, now) for r in commands.recent_commands(db, device_id=device.id,
                                                                   limit=limit)]  # fmt: skip


@router.get("/devices/{device_id:int}/telemetry", response_model=TelemetryHistory)
def telemetry_history(
    db: SessionDep,
    actor: Annotated[Actor, allow(DEVICES_READ)],
    device_id: IdPath,
    since: When | None = None,
    until: When | None = None,
) -> TelemetryHistory:
    """Stored health samples, by default of the last 24 hours (at most 31 days at once)."""
    device = visible_device(db, actor, device_id)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(422, detail=f"{name} needs a time zone, e.g. 2031-03-01T00:00Z.")
    end = until or utcnow()
    start = since or end - timedelta(hours=24)
    if not start < end or end - start > MAX_SPAN:
        raise HTTPException(422, detail="since must be before until, at most 31 days apart.")
    rows = telemetry.samples(db, device_id=device.id, since=start, until=end)
    return TelemetryHistory(
        device_id=device.id,
        since=start,
        until=end,
        points=[TelemetryPoint.model_validate(r) for r in rows],
    )
