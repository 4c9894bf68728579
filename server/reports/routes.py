"""Proof-of-play reports per zone and period, as JSON or CSV."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import PLAYS_READ
from server.bounds import MAX_ID, When
from server.deps import Now, SessionDep
from server.orgs.models import Zone
from server.reports import export, feedback, service, summary
from server.reports.schemas import FeedbackReportOut, ReportRowOut, SummaryOut, ZoneReportOut

router = APIRouter(tags=["reports"])
MAX_SPAN = timedelta(days=93)
ZoneId = Annotated[int, Query(ge=1, le=MAX_ID)]
UnitId = Annotated[int, Query(ge=1, le=MAX_ID)]
PeriodText = Annotated[str, Query(max_length=20)]
Reader = Annotated[Actor, allow(PLAYS_READ)]
TEXT = {"schema": {"type": "string"}}


def _period(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None:
            raise HTTPException(422, detail=f"{name} needs a time zone, e.g. 2031-03-01T00:00Z.")
    if not since < until or until - since > MAX_SPAN:
        raise HTTPException(422, detail="since must be before until, at most 93 days apart.")
    return since, until


def _build(
    db: Session, now: datetime, actor: Actor, zone_id: int, since: datetime, until: datetime
) -> service.ZoneReport:
    zone = reach.load(db, actor, Zone, zone_id)
    start, end = _period(since, until)
    return service.zone_report(db, zone=zone, since=start, until=end, now=now)


@router.get("/reports/plays", response_model=ZoneReportOut)
def zone_plays(
    db: SessionDep,
    now: Now,
    actor: Reader,
    zone_id: ZoneId,
    since: When,
    until: When,
) -> ZoneReportOut:
    """Planned against played for one zone of yours over [since, until)."""
    report = _build(db, now, actor, zone_id, since, until)
    return ZoneReportOut(
        zone_id=report.zone_id,
        zone_name=report.zone_name,
        since=report.since,
        until=report.until,
        counts=report.counts,
        truncated=report.truncated,
        rows=[ReportRowOut(**asdict(r)) for r in report.rows],
    )


@router.get(
    "/reports/plays.csv",
    response_class=Response,
    responses={
        200: {
            "description": "the report as CSV",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
def zone_plays_csv(
    db: SessionDep,
    now: Now,
    actor: Reader,
    zone_id: ZoneId,
    since: When,
    until: When,
) -> Response:
    """The same report as a CSV file (local times, Asia/Ho_Chi_Minh)."""
    report = _build(db, now, actor, zone_id, since, until)
    name = f"proof-of-play-zone{report.zone_id}-{since:%Y%m%d}-{until:%Y%m%d}.csv"
    return Response(
        service.report_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/reports/feedback", response_model=FeedbackReportOut)
def feedback_report(
    db: SessionDep,
    now: Now,
    actor: Reader,
    org_unit_id: UnitId,
    since: When | None = None,
    until: When | None = None,
) -> FeedbackReportOut:
    """Citizen feedback per unit over [since, until): by default the 30 days up to now.

    At most 366 days. Per unit handling the cases: received, handled (answered or closed),
    handled on time, overdue still open at the end, median hours to answer (docs/reports.md).
    """
    return feedback.feedback_report(
        db, actor=actor, org_unit_id=org_unit_id, since=since, until=until, now=now
    )


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get(
    "/reports/summary",
    response_model=SummaryOut,
    responses={
        200: {
            "description": "JSON (schema in docs/reports.md), CSV or XLSX",
            "content": {"text/csv": TEXT, XLSX: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
def summary_report(
    db: SessionDep,
    now: Now,
    actor: Reader,
    org_unit_id: UnitId,
    period: PeriodText = "",
    start: Annotated[str, Query(alias="from", max_length=10)] = "",
    end: Annotated[str, Query(alias="to", max_length=10)] = "",
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Response | SummaryOut:
    """Reports upward: a unit's figures per child unit and in total over a period.

    period: a month (2026-11), a quarter (2026-Q4), a year (2026), or from/to local dates.
    """
    report = summary.summary_report(
        db, actor=actor, org_unit_id=org_unit_id, period=period, start=start, end=end, now=now
    )
    if format == "json":
        return report
    name = f"bao-cao-{report.org_unit['id']}-{report.period.label.replace('..', '_')}"
    if format == "csv":
        body: str | bytes = export.summary_csv(report)
        media = "text/csv; charset=utf-8"
    else:
        body, media = export.summary_xlsx(report), XLSX
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'},
    )
