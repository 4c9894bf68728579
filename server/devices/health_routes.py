"""A device's telemetry history and remote commands with their acknowledgements."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status

from server.access import reach
from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import DEVICES_COMMAND, DEVICES_READ
from server.bounds import IdPath, When, page_limit
from server.db import utcnow
from server.deps import Now, SessionDep, SettingsDep
from server.devices import commands, service, telemetry
from server.devices.commands import command_out
from server.devices.models import Device
from server.devices.schemas import CommandCreate, CommandOut, TelemetryHistory, TelemetryPoint

router = APIRouter(tags=["devices"])
MAX_SPAN = timedelta(days=31)


def _mqtt_on(request: Request) -> bool:
    """True when this server holds an MQTT connection (without one, commands are refused)."""
    return request.app.state.bridge is not None


@router.post(
    "/devices/{device_id:int}/commands",
    response_model=CommandOut,
    status_code=status.HTTP_202_ACCEPTED,
)
def send_command(
    db: SessionDep,
    settings: SettingsDep,
    now: Now,
    actor: Annotated[Actor, allow(DEVICES_COMMAND)],
    mqtt_on: Annotated[bool, Depends(_mqtt_on)],
    device_id: IdPath,
    body: CommandCreate,
) -> CommandOut:
    """Send a command now; the device's acknowledgement shows up in the command list."""
    row = service.send_command(
        db,
        actor=actor,
        device_id=device_id,
        name=body.name,
        volume=body.volume,
        seconds=body.seconds,
        mqtt_on=mqtt_on,
        now=now,
        ttl=timedelta(seconds=settings.command_ttl_s),
    )
    return command_out(row, now)


@router.get("/devices/{device_id:int}/commands", response_model=list[CommandOut])
def list_commands(
    db: SessionDep,
    now: Now,
    actor: Annotated[Actor, allow(DEVICES_READ)],
    device_id: IdPath,
    limit: Annotated[int, page_limit(200)] = 20,
) -> list[CommandOut]:
    """The device's latest commands and their acknowledgements, newest first."""
    device = reach.load(db, actor, Device, device_id)
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
    device = reach.load(db, actor, Device, device_id)
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
