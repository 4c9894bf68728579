"""Device pages for technicians: the list with health, and one device in detail."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.access import policy, reach
from server.access.actor import Actor
from server.bounds import MAX_ID, IdPath
from server.console.i18n import Translator, language_of
from server.console.render import page
from server.console.selftest_pages import save_schedule, selftest_context, send_self_test
from server.console.session import ConsoleActor, check_form_csrf
from server.db import utcnow
from server.deps import SessionDep, SettingsDep, now_of
from server.devices import commands
from server.devices.display import board_of, profile_has_display
from server.devices.health import health_flags
from server.devices.models import Device
from server.orgs.models import OrgUnit, Zone
from server.planner.compile import latest_schedule
from server.planner.models import DeviceSchedule
from server.plays.service import PlayFilter, list_plays
from server.programmes.models import Programme

router = APIRouter(include_in_schema=False)
STATUSES = ("all", "online", "offline", "alarm")


def published_versions(db: Session, device_ids: list[int]) -> dict[int, int]:
    """The latest schedule version the planner published, per device."""
    if not device_ids:
        return {}
    rows = db.execute(
        select(DeviceSchedule.device_id, func.max(DeviceSchedule.version))
        .where(DeviceSchedule.device_id.in_(device_ids))
        .group_by(DeviceSchedule.device_id)
    ).all()
    return {device_id: version for device_id, version in rows}


def devices_with_flags(db: Session, actor: Actor, *, q: str = "") -> list[tuple[Device, list[str]]]:
    """The caller's devices (by uid) with their health warnings."""
    query = select(Device).where(reach.reachable(actor, Device)).order_by(Device.uid)
    if q:
        query = query.where(Device.uid.ilike(f"%{q}%") | Device.name.ilike(f"%{q}%"))
    devices = list(db.scalars(query.limit(2000)))
    versions = published_versions(db, [d.id for d in devices])
    now = utcnow()
    return [(d, health_flags(d, now=now, published_schedule=versions.get(d.id))) for d in devices]


def needs_attention(device: Device, flags: list[str]) -> bool:
    """Any warning, offline included (a revoked device was put aside on purpose)."""
    return device.revoked_at is None and bool(flags)


@router.get("/devices", response_class=HTMLResponse)
def devices_page(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    q: Annotated[str, Query(max_length=100)] = "",
    status: Annotated[str, Query(max_length=10)] = "all",
) -> HTMLResponse:
    """Every device of the user's org units with status, signal, temperature, disk, versions."""
    rows = devices_with_flags(db, actor, q=q.strip())
    if status == "online":
        rows = [(d, f) for d, f in rows if d.online]
    elif status == "offline":
        rows = [(d, f) for d, f in rows if not d.online]
    elif status == "alarm":
        rows = [(d, f) for d, f in rows if needs_attention(d, f)]
    versions = published_versions(db, [d.id for d, _ in rows])
    boards = {d.id for d, _ in rows if profile_has_display(d.firmware_profile)}
    return page(
        request,
        "devices.html",
        actor=actor,
        active="devices",
        rows=rows,
        q=q,
        status=status if status in STATUSES else "all",
        statuses=STATUSES,
        versions=versions,
        boards=boards,
    )


def render_device(
    request: Request,
    db: Session,
    actor: Actor,
    device_id: int,
    *,
    status_code: int = 200,
    **extra: Any,
) -> HTMLResponse:
    """One device: health now and over 24 h, schedule, proof of play, remote commands, the
    acoustic self-test and power; for an e-board, what its screen shows (from the newest
    schedule sent to it)."""
    device = reach.load(db, actor, Device, device_id)
    schedule = latest_schedule(db, device_id=device.id)
    now = utcnow()
    flags = health_flags(device, now=now, published_schedule=schedule.version if schedule else None)
    upcoming: list[tuple[datetime, dict[str, Any]]] = []
    for item in schedule.document.get("items", []) if schedule is not None else []:
        start, end = datetime.fromisoformat(item["start"]), datetime.fromisoformat(item["end"])
        if end >= now and len(upcoming) < 10:
            upcoming.append((start, item))
    ids = {int(item["programme_id"]) for _start, item in upcoming}
    titles = dict(
        db.execute(select(Programme.id, Programme.title).where(Programme.id.in_(ids))).all()
    )
    plays, _total = list_plays(
        db, actor=actor, where=PlayFilter(device_id=device.id), limit=20, offset=0
    )
    unit = reach.load(db, actor, OrgUnit, device.org_unit_id)  # the device's unit is in reach
    zones: list[Zone] = list(device.zones)
    recent = [
        (c, commands.status_at(c, now))
        for c in commands.recent_commands(db, device_id=device.id, limit=10)
    ]
    # The app's clock, as GET /devices/{id}/display reads it.
    board = board_of(db, device=device, row=schedule, now=now_of(request))
    selftest = selftest_context(
        db, actor=actor, device=device, now=now_of(request), t=Translator(language_of(request))
    )
    return page(
        request,
        "device.html",
        actor=actor,
        active="devices",
        status_code=status_code,
        device=device,
        flags=flags,
        schedule=schedule,
        upcoming=upcoming,
        titles=titles,
        plays=plays,
        unit=unit,
        zones=zones,
        commands=recent,
        board=board,
        done=request.query_params.get("done", ""),
        **selftest,
        **extra,
    )


@router.get("/devices/{device_id}", response_class=HTMLResponse)
def device_page(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    device_id: IdPath,
) -> HTMLResponse:
    """One device in detail (render_device)."""
    return render_device(request, db, actor, device_id)


@router.post("/devices/{device_id:int}/self-test", response_model=None)
def self_test_form(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    actor: ConsoleActor,
    device_id: IdPath,
    csrf: Annotated[str, Form(max_length=100)] = "",
    volume: Annotated[str, Form(max_length=10)] = "",
    rebaseline: Annotated[bool, Form()] = False,
) -> Response:
    """Run the acoustic self-test now (optionally as the new baseline); errors show on the page."""
    check_form_csrf(request, csrf)
    if not actor.may(policy.DEVICES_COMMAND):
        raise HTTPException(403, detail="")
    error = send_self_test(
        db, actor=actor, device_id=device_id, volume=volume, rebaseline=rebaseline,
        mqtt_on=request.app.state.bridge is not None,  # as the API: 503 without MQTT
        now=now_of(request), ttl=timedelta(seconds=settings.command_ttl_s),
        t=Translator(language_of(request)),
    )  # fmt: skip
    if error:
        return render_device(request, db, actor, device_id, st_error=error, status_code=422)
    return RedirectResponse(f"/devices/{device_id}?done=selftest#selftest", status_code=303)


@router.post("/devices/{device_id:int}/selftest-schedule", response_model=None)
def selftest_schedule_form(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    device_id: IdPath,
    org_unit_id: Annotated[int, Form(ge=1, le=MAX_ID)],
    csrf: Annotated[str, Form(max_length=100)] = "",
    daily_at: Annotated[str, Form(max_length=10)] = "",
    volume: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Set the daily self-test of the device's unit or one above it (never 22:00-05:00)."""
    check_form_csrf(request, csrf)
    device = reach.load(db, actor, Device, device_id)
    error = save_schedule(
        db, actor=actor, device=device, org_unit_id=org_unit_id, daily_at=daily_at,
        volume=volume, t=Translator(language_of(request)),
    )  # fmt: skip
    if error:
        return render_device(request, db, actor, device_id, schedule_error=error, status_code=422)
    return RedirectResponse(
        f"/devices/{device_id}?done=schedule#selftest-schedule", status_code=303
    )
