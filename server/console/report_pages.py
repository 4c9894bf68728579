"""The proof-of-play report page: one zone over a period, with a CSV download."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import local_tz, to_local_wall, wall_to_utc
from server.access import reach
from server.bounds import IdFilter
from server.console.dates import parse_day
from server.console.programme_pages import my_zones
from server.console.render import page
from server.console.session import ConsoleActor
from server.console.zones import unit_names
from server.deps import SessionDep, now_of
from server.devices.models import Device
from server.orgs.models import Zone
from server.reports import service

router = APIRouter(include_in_schema=False)
SHOWN_ROWS = 500
MAX_DAYS = 93


def _day(name: str, text: str) -> date | None:
    """A dd/mm/yyyy (or ISO) date from the form; empty means the default."""
    if not text.strip():
        return None
    try:
        return parse_day(text)
    except ValueError:
        raise HTTPException(422, detail=f"{name} must be a date like 31/03/2031.") from None


def _device_names(db: Session, report: service.ZoneReport | None) -> dict[int, str]:
    """Names of the report's devices: people know a cluster by its name, not its code."""
    ids = {r.device_id for r in report.rows} if report else set()
    if not ids:
        return {}
    return dict(db.execute(select(Device.id, Device.name).where(Device.id.in_(ids))).all())


@router.get("/reports", response_class=HTMLResponse)
def reports_page(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    zone_id: IdFilter = None,
    start: Annotated[str, Query(max_length=20)] = "",
    end: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    """Planned against played for a zone and period (local dates dd/mm/yyyy, end included)."""
    zones = my_zones(db, actor)
    today = to_local_wall(now_of(request)).date()
    first = _day("start", start) or today - timedelta(days=6)
    last = _day("end", end) or today
    if last < first:
        first, last = last, first
    last = min(last, first + timedelta(days=MAX_DAYS - 1))
    report = None
    csv_url = ""
    if zone_id is not None:
        zone = reach.load(db, actor, Zone, zone_id)
        since = wall_to_utc(datetime.combine(first, time(0, 0)), tz=local_tz())
        until = wall_to_utc(datetime.combine(last + timedelta(days=1), time(0, 0)), tz=local_tz())
        report = service.zone_report(db, zone=zone, since=since, until=until, now=now_of(request))
        query = {"zone_id": zone.id, "since": since.isoformat(), "until": until.isoformat()}
        csv_url = "/api/v1/reports/plays.csv?" + urlencode(query)
    return page(
        request,
        "reports.html",
        actor=actor,
        units=unit_names(db, actor),
        active="reports",
        zones=zones,
        zone_id=zone_id,
        start=first,
        end=last,
        report=report,
        csv_url=csv_url,
        device_names=_device_names(db, report),
        shown=SHOWN_ROWS,
    )
