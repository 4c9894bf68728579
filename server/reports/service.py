"""Planned playbacks of a zone's programmes matched against what its devices reported."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import expand_programme, to_local_wall
from server.devices.models import Device
from server.orgs.models import Zone
from server.plays.models import PlayRecord
from server.programmes.models import ACTIVE, APPROVED, ENDED, Programme, programme_zones
from server.programmes.validation import to_spec

# Programmes whose occurrences were really planned (a cancelled one's are not reported).
REPORTED_STATUSES = (APPROVED, ACTIVE, ENDED)
OUTCOMES = ("played", "preempted", "failed", "missed", "no_report", "upcoming", "unplanned")
MAX_ROWS = 50_000


@dataclass(frozen=True)
class ReportRow:
    """One planned playback on one device, and what the device said about it."""

    device_id: int
    device_uid: str
    programme_id: int | None
    programme_title: str
    priority: str
    planned_start: datetime
    actual_start: datetime | None
    outcome: str
    reason: str


@dataclass
class ZoneReport:
    """A zone's proof of play over [since, until): rows and counts per outcome."""

    zone_id: int
    zone_name: str
    since: datetime
    until: datetime
    rows: list[ReportRow] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    truncated: bool = False


def zone_report(
    db: Session, *, zone: Zone, since: datetime, until: datetime, now: datetime
) -> ZoneReport:
    """Every planned occurrence × device of the zone, with the reported outcome."""
    devices = list(
        db.scalars(select(Device).where(Device.zones.any(Zone.id == zone.id)).order_by(Device.uid))
    )
    programmes = list(
        db.scalars(
            select(Programme)
            .where(
                Programme.status.in_(REPORTED_STATUSES),
                Programme.id.in_(
                    select(programme_zones.c.programme_id).where(
                        programme_zones.c.zone_id == zone.id
                    )
                ),
            )
            .order_by(Programme.id)
        )
    )
    plays = {
        (p.device_id, p.item_id): p
        for p in db.scalars(
            select(PlayRecord).where(
                PlayRecord.device_id.in_([d.id for d in devices]),
                PlayRecord.planned_start >= since,
                PlayRecord.planned_start < until,
            )
        )
    }
    report = ZoneReport(zone_id=zone.id, zone_name=zone.name, since=since, until=until)
    matched: set[tuple[int, str]] = set()
    for programme in programmes:
        spec = to_spec(programme)
        if spec is None:
            continue
        for item in expand_programme(spec, window_start=since, window_end=until):
            if not since <= item.start < until:
                continue
            for device in devices:
                play = plays.get((device.id, item.item_id))
                if play is not None:
                    matched.add((device.id, item.item_id))
                    outcome, actual, reason = play.outcome, play.actual_start, play.reason
                else:
                    outcome = "upcoming" if item.start > now else "no_report"
                    actual, reason = None, ""
                report.rows.append(
                    ReportRow(
                        device.id,
                        device.uid,
                        programme.id,
                        programme.title,
                        programme.priority,
                        item.start,
                        actual,
                        outcome,
                        reason,
                    )
                )
    uids = {d.id: d.uid for d in devices}
    for key, play in plays.items():
        if key not in matched:  # played although no approved programme planned it here
            report.rows.append(
                ReportRow(
                    play.device_id,
                    uids[play.device_id],
                    play.programme_id,
                    "",
                    play.priority,
                    play.planned_start,
                    play.actual_start,
                    "unplanned",
                    play.reason,
                )
            )
    report.rows.sort(key=lambda r: (r.planned_start, r.device_uid))
    report.counts = dict(Counter(r.outcome for r in report.rows))
    report.counts["planned"] = sum(
        n for outcome, n in report.counts.items() if outcome != "unplanned"
    )
    if len(report.rows) > MAX_ROWS:
        report.rows = report.rows[:MAX_ROWS]
        report.truncated = True
    return report


def report_csv(report: ZoneReport) -> str:
    """The report as CSV (UTF-8 with BOM, so spreadsheet programs show Vietnamese correctly)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(
        [
            "zone",
            "device",
            "programme_id",
            "programme",
            "priority",
            "planned_start_local",
            "actual_start_local",
            "outcome",
            "reason",
        ]
    )
    for r in report.rows:
        writer.writerow(
            [
                report.zone_name,
                r.device_uid,
                r.programme_id or "",
                r.programme_title,
                r.priority,
                f"{to_local_wall(r.planned_start):%Y-%m-%d %H:%M:%S}",
                f"{to_local_wall(r.actual_start):%Y-%m-%d %H:%M:%S}" if r.actual_start else "",
                r.outcome,
                r.reason,
            ]
        )
    return out.getvalue()
