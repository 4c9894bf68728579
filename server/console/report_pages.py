"""Report pages: proof of play of one zone, and reports upward (a unit per child unit)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
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
from server.orgs.models import OrgUnit, Zone
from server.reports import service, summary
from server.reports.schemas import SummaryRow

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


# -- reports upward: a unit's figures per child unit, with bars drawn on the server ----------

BAR_WIDTH = 320  # px of a full bar (100 % or the largest value)
MAX_UNITS_LISTED = 500


def _reachable_units(db: Session, actor: ConsoleActor) -> list[tuple[int, str, str]]:
    """(id, name, kind) of the org units the user may report on."""
    query = (
        select(OrgUnit.id, OrgUnit.name, OrgUnit.kind)
        .where(reach.reachable(actor, OrgUnit))
        .order_by(OrgUnit.parent_id.is_not(None), OrgUnit.name)
        .limit(MAX_UNITS_LISTED)
    )
    return [(i, n, k) for i, n, k in db.execute(query).all()]


def bars(
    rows: list[SummaryRow], value: Callable[[SummaryRow], float | None], *, share: bool
) -> list[tuple[str, float | None, int]]:
    """(name, value, width px) per row; shares scale to 100 %, other figures to the largest."""
    values = [(r.name, value(r)) for r in rows]
    top = 1.0 if share else max([v or 0.0 for _, v in values] + [0.0])
    return [(name, v, round(BAR_WIDTH * (v or 0.0) / top) if top else 0) for name, v in values]


@router.get("/reports/summary", response_class=HTMLResponse)
def summary_page(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    org_unit_id: IdFilter = None,
    period: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    """Reports upward for a unit and period: per-child bars, availability, downloads."""
    units = _reachable_units(db, actor)
    now = now_of(request)
    period = period.strip() or f"{to_local_wall(now):%Y-%m}"
    chosen = org_unit_id or actor.user.org_unit_id or (units[0][0] if units else None)
    report = None
    links: dict[str, str] = {}
    if chosen is not None:
        report = summary.summary_report(
            db, actor=actor, org_unit_id=chosen, period=period, start="", end="", now=now
        )
        for fmt in ("json", "csv", "xlsx"):
            query = {"org_unit_id": chosen, "period": period, "format": fmt}
            links[fmt] = "/api/v1/reports/summary?" + urlencode(query)
    rows = report.rows if report else []
    charts: dict[str, Any] = {}
    if report:
        charts = {
            "minutes": bars(rows, lambda r: r.broadcast.minutes, share=False),
            "on_time": bars(
                rows, lambda r: _share(r.programmes.on_time, r.programmes.planned), share=True
            ),
            "online": bars(rows, lambda r: r.availability.online_share, share=True),
            "essential": bars(rows, lambda r: r.bulletins.essential_reached_share, share=True),
            "feedback": bars(
                rows, lambda r: _share(r.feedback.handled_on_time, r.feedback.handled), share=True
            ),
        }
    return page(
        request,
        "report_summary.html",
        actor=actor,
        active="reports",
        units=units,
        chosen=chosen,
        period=period,
        report=report,
        charts=charts,
        bar_width=BAR_WIDTH,
        links=links,
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
