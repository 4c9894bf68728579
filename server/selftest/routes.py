"""The acoustic self-test: run it now, read results and device events, set a unit's daily time."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status

from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import DEVICES_COMMAND, DEVICES_MANAGE, DEVICES_READ
from server.bounds import IdPath, page_limit
from server.deps import Now, SessionDep, SettingsDep
from server.devices import commands
from server.devices.schemas import CommandOut
from server.plays.models import DeviceEventRecord
from server.selftest import service
from server.selftest.schemas import (
    EventKind,
    EventOut,
    EventsOut,
    RunOut,
    ScheduleOut,
    ScheduleUpdate,
    SelfTestCreate,
    SelfTestsOut,
    TrendPoint,
)

router = APIRouter(tags=["self-test"])
Reader = Annotated[Actor, allow(DEVICES_READ)]
Limit = Annotated[int, page_limit(200)]


def _mqtt_on(request: Request) -> bool:
    """True when this server holds an MQTT connection (without one, commands are refused)."""
    return request.app.state.bridge is not None


def _run(row: DeviceEventRecord | None) -> RunOut | None:
    if row is None:
        return None
    data: dict[str, Any] = dict(row.data or {})
    return RunOut(
        id=row.id,
        at=row.at,
        code=row.code,
        verdict=service.VERDICTS.get(row.code, row.code),
        detail=row.detail,
        command_id=row.command_id,
        baseline=bool(data.get("baseline")) or row.code == "baseline",
        level_vs_baseline_db=data.get("level_vs_baseline_db"),
        figures=data.get("figures"),
        reasons=list(data.get("reasons") or []),
    )


def _point(row: DeviceEventRecord) -> TrendPoint:
    data = dict(row.data or {})
    return TrendPoint(
        at=row.at,
        level_db=(data.get("figures") or {}).get("level_db"),
        level_vs_baseline_db=data.get("level_vs_baseline_db"),
        code=row.code,
    )


def _event(row: DeviceEventRecord) -> EventOut:
    data = dict(row.data or {})
    return EventOut(
        id=row.id, kind=row.kind, code=row.code, at=row.at, detail=row.detail, data=data
    )


@router.post(
    "/devices/{device_id:int}/self-test",
    response_model=CommandOut,
    status_code=status.HTTP_202_ACCEPTED,
)
def run_self_test(
    db: SessionDep,
    settings: SettingsDep,
    now: Now,
    actor: Annotated[Actor, allow(DEVICES_COMMAND)],
    mqtt_on: Annotated[bool, Depends(_mqtt_on)],
    device_id: IdPath,
    body: SelfTestCreate | None = None,
) -> CommandOut:
    """Ask the device for an acoustic self-test now; the result arrives as a self-test event."""
    body = body or SelfTestCreate()
    row = service.request_self_test(
        db,
        actor=actor,
        device_id=device_id,
        volume=body.volume,
        rebaseline=body.rebaseline,
        mqtt_on=mqtt_on,
        now=now,
        ttl=timedelta(seconds=settings.command_ttl_s),
    )
    return commands.command_out(row, now)


@router.get("/devices/{device_id:int}/self-tests", response_model=SelfTestsOut)
def list_self_tests(
    db: SessionDep, now: Now, actor: Reader, device_id: IdPath, limit: Limit = 50
) -> SelfTestsOut:
    """The device's self-test runs (newest first), its baseline and 12 weeks of levels."""
    found = service.self_tests(db, actor=actor, device_id=device_id, limit=limit, now=now)
    return SelfTestsOut(
        latest=_run(found.latest),
        baseline=_run(found.baseline),
        items=[r for r in map(_run, found.items) if r is not None],
        trend=[_point(r) for r in found.trend],
    )


@router.get("/devices/{device_id:int}/events", response_model=EventsOut)
def list_device_events(
    db: SessionDep,
    actor: Reader,
    device_id: IdPath,
    kind: Annotated[EventKind | None, Query(description="selftest, silence or power")] = None,
    limit: Limit = 50,
) -> EventsOut:
    """What the device found out about itself: self-tests, silence alarms, power changes."""
    rows = service.device_events(db, actor=actor, device_id=device_id, kind=kind, limit=limit)
    return EventsOut(items=[_event(r) for r in rows])


@router.patch("/org-units/{unit_id:int}/selftest", response_model=ScheduleOut)
def set_selftest_schedule(
    db: SessionDep,
    actor: Annotated[Actor, allow(DEVICES_MANAGE)],
    unit_id: IdPath,
    body: ScheduleUpdate,
) -> ScheduleOut:
    """Set the unit's daily self-test (its devices and those below follow it), or turn it off."""
    unit, changed = service.set_schedule(
        db, actor=actor, unit_id=unit_id, daily_at=body.daily_at, volume=body.volume
    )
    return ScheduleOut(
        org_unit_id=unit.id,
        daily_at=unit.selftest_daily_at,
        volume=unit.selftest_volume,
        devices_updated=changed,
    )
