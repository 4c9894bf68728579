"""What the server thinks a device's schedule is, next to what the device reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel

from server.access import reach
from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import DEVICES_READ
from server.bounds import IdPath
from server.deps import SessionDep
from server.devices.models import Device
from server.planner.compile import latest_schedule

router = APIRouter(tags=["schedules"])


class DeviceScheduleOut(BaseModel):
    """The latest published schedule document of a device and the version it reports holding."""

    device_id: int
    device_uid: str
    version: int | None
    content_hash: str | None
    published_at: datetime | None
    horizon_start: datetime | None
    horizon_end: datetime | None
    items: list[dict[str, Any]]
    clips: list[dict[str, Any]]
    reported_schedule_version: int | None
    in_sync: bool


@router.get("/devices/{device_id:int}/schedule", response_model=DeviceScheduleOut)
def device_schedule(
    db: SessionDep,
    actor: Annotated[Actor, allow(DEVICES_READ)],
    device_id: IdPath,
) -> DeviceScheduleOut:
    """The schedule the planner last published to the device, and whether it has it."""
    device = reach.load(db, actor, Device, device_id)
    row = latest_schedule(db, device_id=device.id)
    document: dict[str, Any] = row.document if row is not None else {}
    version = row.version if row is not None else None
    return DeviceScheduleOut(
        device_id=device.id,
        device_uid=device.uid,
        version=version,
        content_hash=row.content_hash if row is not None else None,
        published_at=row.published_at if row is not None else None,
        horizon_start=document.get("horizon_start"),
        horizon_end=document.get("horizon_end"),
        items=list(document.get("items", [])),
        clips=list(document.get("clips", [])),
        reported_schedule_version=device.reported_schedule_version,
        in_sync=version is not None and device.reported_schedule_version == version,
    )
