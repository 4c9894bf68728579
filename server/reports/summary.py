"""Reports upward: a unit's figures per child unit over a period, from what devices reported."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from schedules import LOCAL_TZ_NAME
from server.access import reach
from server.access.actor import Actor
from server.bulletins.models import (
    DECLINED,
    EXPIRED,
    PLAYED,
    PRIORITY,
    SCHEDULED,
    WITHDRAWN,
    Bulletin,
    BulletinDelivery,
)
from server.devices.models import Device
from server.live.models import LiveSessionRow
from server.orgs.models import OrgUnit, zone_devices
from server.plays.models import PlayRecord
from server.programmes.models import Programme, programme_zones
from server.reports import figures, periods, presence, rollup
from server.reports.feedback import FeedbackAcc, per_unit
from server.reports.schemas import (
    SCHEMA_VERSION,
    AvailabilityFigures,
    BroadcastFigures,
    BulletinFigures,
    EmergencyFigures,
    PeriodOut,
    ProgrammeFigures,
    SeriesPoint,
    SummaryOut,
    SummaryRow,
)
from server.reports.service import REPORTED_STATUSES
from server.selftest.figures import failed_devices

FAULTY_BELOW = 0.9  # a cluster online less than 90 % of the period counts as faulty
ORIGINS = ("own", "bulletin", "relay", "live", "emergency")
RELAY_MODES = ("relayed", "fallback", "mixed")
NOTES = [
    "Minutes are cluster-minutes: the play time each cluster reported, summed.",
    "Relay minutes are the relayed audio clusters reported hearing; a relay item's fallback"
    " and silence count in its programme's origin.",
    "Live minutes come from live sessions, which the server keeps for 24 hours only.",
    "Programme figures count items x clusters, against the clusters' current zones.",
]
TOTAL = -1  # the accumulator key of the chosen unit's total


@dataclass
class _Acc:
    """Running figures of one unit."""

    origin: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    topic: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    relay_fallback: float = 0.0
    relay_silent: float = 0.0
    relay_items: Counter[str] = field(default_factory=Counter)
    prog: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    bull: Counter[str] = field(default_factory=Counter)
    em_programmes: set[int] = field(default_factory=set)
    em_delays: list[float] = field(default_factory=list)
    clusters: int = 0
    measured_s: float = 0.0
    online_s: float = 0.0
    faulty: int = 0
    longest_s: float = 0.0
    selftest_failed: int = 0
    feedback: FeedbackAcc = field(default_factory=FeedbackAcc)


class _Book:
    """Accumulators of every child and of the total; add() feeds a unit's child and the total."""

    def __init__(self, child_of: dict[int, int | None]) -> None:
        self.child_of = child_of
        self.accs: defaultdict[int, _Acc] = defaultdict(_Acc)

    def of(self, org_unit_id: int) -> list[_Acc]:
        child = self.child_of.get(org_unit_id)
        return [self.accs[TOTAL]] if child is None else [self.accs[TOTAL], self.accs[child]]


def summary(
    db: Session, *, actor: Actor, org_unit_id: int, period: periods.Period, now: datetime
) -> SummaryOut:
    """The chosen unit's figures over the period: one row per child unit and the total."""
    unit = reach.load(db, actor, OrgUnit, org_unit_id)
    child_of = figures.child_of_units(db, root_id=unit.id)
    book = _Book(child_of)
    units = sorted(child_of)
    device_rows = db.execute(
        select(Device.id, Device.org_unit_id, Device.created_at, Device.revoked_at).where(
            Device.org_unit_id.in_(units)
        )
    ).all()
    device_unit = {d.id: d.org_unit_id for d in device_rows}
    device_ids = select(Device.id).where(Device.org_unit_id.in_(units))
    since, until = period.since, period.until
    limit = min(until, now)
    _plays(db, book, units, device_ids, period, limit, now)
    _deliveries(db, book, units, since, until)
    _live(db, book, since, until)
    for unit_id, cases in per_unit(db, units=units, since=since, until=until, now=now).items():
        for acc in book.of(unit_id):
            acc.feedback.add(cases)
    edges = periods.bucket_edges(period.first, period.last)
    series = presence.Series([e.timestamp() for e in edges])
    found = presence.availability(
        db,
        devices=[(d.id, d.created_at, d.revoked_at) for d in device_rows],
        device_ids=device_ids,
        since=since,
        end=limit,
        series=series,
    )
    for device_id, av in found.items():
        for acc in book.of(device_unit[device_id]):
            acc.clusters += 1
            acc.measured_s += av.measured_s
            acc.online_s += av.online_s
            acc.longest_s = max(acc.longest_s, av.longest_outage_s)
            acc.faulty += int(av.share is not None and av.share < FAULTY_BELOW)
    for device_id in failed_devices(db, device_ids=device_ids, since=since, until=until):
        for acc in book.of(device_unit[device_id]):
            acc.selftest_failed += 1
    children = db.execute(
        select(OrgUnit.id, OrgUnit.name, OrgUnit.kind)
        .where(OrgUnit.parent_id == unit.id)
        .order_by(OrgUnit.name, OrgUnit.id)
    ).all()
    return SummaryOut(
        schema_version=SCHEMA_VERSION,
        generated_at=now.astimezone(UTC),
        org_unit={"id": unit.id, "name": unit.name, "kind": unit.kind},
        period=PeriodOut(
            label=period.label,
            first_day=period.first.isoformat(),
            last_day=period.last.isoformat(),
            since=since,
            until=until,
            time_zone=LOCAL_TZ_NAME,
        ),
        rows=[_row(c.id, c.name, c.kind, book.accs[c.id]) for c in children],
        total=_row(unit.id, unit.name, unit.kind, book.accs[TOTAL]),
        availability_series=[
            SeriesPoint(start=periods.local_day(edge).isoformat(), online_share=share)
            for edge, share in zip(edges, series.finish(), strict=False)
        ],
        notes=NOTES,
    )


def _plays(
    db: Session,
    book: _Book,
    units: list[int],
    device_ids: Select[Any],
    period: periods.Period,
    limit: datetime,
    now: datetime,
) -> None:
    """Proof of play against the plan: minutes, outcomes, reasons, emergencies."""
    since, until = period.since, period.until
    watermark = rollup.refresh(db, now=now)
    whole = rollup.whole_months(period.first, period.last)
    covered = None
    if whole is not None:
        edges = periods.utc_midnights(*whole)
        covered = (edges[0], edges[1], rollup.months(*whole))
    groups = rollup.play_groups(
        db, units=units, since=since, until=until, covered=covered, watermark=watermark
    )
    planned_units = db.execute(
        select(
            programme_zones.c.programme_id,
            Device.org_unit_id,
            func.count(func.distinct(Device.id)),
        )
        .join(zone_devices, zone_devices.c.zone_id == programme_zones.c.zone_id)
        .join(Device, Device.id == zone_devices.c.device_id)
        .join(Programme, Programme.id == programme_zones.c.programme_id)
        .where(Programme.status.in_(REPORTED_STATUSES), Device.id.in_(device_ids))
        .group_by(programme_zones.c.programme_id, Device.org_unit_id)
    ).all()
    programme_ids = {g[1] for g in groups if g[1] is not None} | {r[0] for r in planned_units}
    info = {
        row.id: row
        for row in db.execute(
            select(
                Programme.id,
                Programme.priority,
                Programme.bulletin_id,
                Programme.start,
                Programme.rrule,
                Programme.dtstart,
                Programme.valid_from,
                Programme.valid_until,
                Bulletin.topic,
            )
            .outerjoin(Bulletin, Bulletin.id == Programme.bulletin_id)
            .where(Programme.id.in_(programme_ids))
        )
    }
    reported: Counter[tuple[int, int | None]] = Counter()
    for group in groups:
        unit, programme_id, priority, outcome, why, mode, n, n_on_time, seconds = group[:9]
        relayed, fallback, silent = (float(v or 0.0) / 60.0 for v in group[9:12])
        reported[(unit, programme_id)] += n
        prog = info.get(programme_id)
        origin = _origin(priority, prog)
        topic = (prog.topic if prog is not None else None) or ""
        minutes = float(seconds or 0.0) / 60.0
        # The relayed audio is the relay's; the rest of the item (its clips, the fallback
        # played instead of the relay, silence) is the programme's own origin.
        relayed = min(relayed, minutes)
        for acc in book.of(unit):
            acc.origin["relay"] += relayed
            acc.origin[origin] += minutes - relayed
            acc.topic[topic] += minutes
            acc.relay_fallback += fallback
            acc.relay_silent += silent
            if mode in RELAY_MODES:
                acc.relay_items[mode] += n
            acc.prog["reported"] += n
            acc.prog[outcome] += n
            acc.prog["on_time"] += int(n_on_time or 0)
            if why:
                acc.reasons[why] += n
            if priority == "emergency" and programme_id is not None:
                acc.em_programmes.add(programme_id)
                acc.prog["em_reached"] += n if outcome == "played" else 0
    counter = figures.OccurrenceCounter(since, limit)
    planned_keys: set[tuple[int, int | None]] = set()
    for programme_id, unit, clusters in planned_units:
        prog = info[programme_id]
        planned = clusters * counter.count(
            start=prog.start,
            rrule=prog.rrule,
            dtstart=prog.dtstart,
            valid_from=prog.valid_from,
            valid_until=prog.valid_until,
        )
        planned_keys.add((unit, programme_id))
        missing = max(0, planned - reported[(unit, programme_id)])
        for acc in book.of(unit):
            acc.prog["planned"] += planned
            acc.prog["planned_not_reported"] += missing
            if prog.priority == "emergency" and planned:
                acc.em_programmes.add(programme_id)
                acc.prog["em_targeted"] += planned
    for key, n in reported.items():
        if key not in planned_keys:
            for acc in book.of(key[0]):
                acc.prog["reported_not_planned"] += n
    p = PlayRecord
    delays = db.execute(
        select(Device.org_unit_id, figures.seconds_between(db, p.planned_start, p.actual_start))
        .join(Device, Device.id == p.device_id)
        .where(
            p.priority == "emergency",
            p.planned_start >= since,
            p.planned_start < until,
            p.outcome == "played",
            Device.org_unit_id.in_(units),
        )
    ).all()
    for unit, delay in delays:
        for acc in book.of(unit):
            acc.em_delays.append(float(delay))


def _origin(priority: str, prog: Any) -> str:
    if priority == "emergency":
        return "emergency"
    if prog is not None and prog.bulletin_id is not None:
        return "bulletin"
    return "own"


def _deliveries(
    db: Session, book: _Book, units: list[int], since: datetime, until: datetime
) -> None:
    """Bulletins from above received by the units' communes in the period (summed in SQL)."""
    d, b = BulletinDelivery, Bulletin
    accepted = (d.programme_id.is_not(None)) | d.status.in_((SCHEDULED, PLAYED))
    unreported = (d.status == PLAYED) & (d.clusters_played == 0)
    in_validity = (
        (b.level == PRIORITY)
        & (d.first_played_at >= b.valid_from)
        & (d.first_played_at < b.valid_until)
    )
    reached = b.essential & (d.clusters_targeted > 0) & (d.clusters_played >= d.clusters_targeted)
    rows = db.execute(
        select(
            d.org_unit_id,
            d.status,
            func.count(),
            func.count().filter(accepted),
            func.count().filter(unreported),
            func.count().filter(b.level == PRIORITY),
            func.count().filter(in_validity),
            func.count().filter(b.essential),
            func.count().filter(reached),
        )
        .join(b, b.id == d.bulletin_id)
        .where(d.org_unit_id.in_(units), d.created_at >= since, d.created_at < until)
        .group_by(d.org_unit_id, d.status)
    ).all()
    names = (
        "delivered",
        "accepted",
        "played_without_report",
        "priority",
        "priority_played_in_validity",
        "essential",
        "essential_reached",
    )
    for unit, status, *counts in rows:
        marks = Counter(dict(zip(names, counts, strict=True)))
        if status not in marks:  # "delivered" counts every delivery, not the status alone
            marks[status] = counts[0]
        for acc in book.of(unit):
            acc.bull.update(marks)


def _live(db: Session, book: _Book, since: datetime, until: datetime) -> None:
    """Live sessions (kept 24 h): session minutes × clusters listening."""
    low, high = since.timestamp(), until.timestamp()
    for ids, view in db.execute(select(LiveSessionRow.org_unit_ids, LiveSessionRow.view)):
        unit = next((i for i in ids if i in book.child_of), None)
        started, ended = view.get("started_at"), view.get("ended_at") or view.get("started_at")
        if unit is None or not isinstance(started, int | float):
            continue
        seconds = max(0.0, min(float(ended), high) - max(float(started), low))
        listeners = int(view.get("listeners") or 0)
        for acc in book.of(unit):
            acc.origin["live"] += seconds * listeners / 60.0


def _row(org_unit_id: int, name: str, kind: str, acc: _Acc) -> SummaryRow:
    prog = acc.prog
    not_played = prog["missed"] + prog["preempted"] + prog["failed"]
    reasons = {r: acc.reasons[r] for r in figures.REASONS}
    reasons["no_report"] = prog["planned_not_reported"]
    essential = acc.bull["essential"]
    p95 = figures.nearest_rank(acc.em_delays, 0.95)
    return SummaryRow(
        org_unit_id=org_unit_id,
        name=name,
        kind=kind,
        broadcast=BroadcastFigures(
            minutes=round(sum(acc.origin.values()), 2),
            by_origin={o: round(acc.origin[o], 2) for o in ORIGINS},
            by_topic={t: round(m, 2) for t, m in sorted(acc.topic.items())},
            relay_fallback=round(acc.relay_fallback, 2),
            relay_silent=round(acc.relay_silent, 2),
            relay_items={m: acc.relay_items[m] for m in RELAY_MODES},
        ),
        programmes=ProgrammeFigures(
            planned=prog["planned"],
            reported=prog["reported"],
            played=prog["played"],
            on_time=prog["on_time"],
            not_played=not_played,
            missed=prog["missed"],
            preempted=prog["preempted"],
            failed=prog["failed"],
            planned_not_reported=prog["planned_not_reported"],
            reported_not_planned=prog["reported_not_planned"],
            not_played_reasons=reasons,
        ),
        bulletins=BulletinFigures(
            delivered=acc.bull["delivered"],
            accepted=acc.bull["accepted"],
            declined=acc.bull[DECLINED],
            played=acc.bull[PLAYED],
            expired=acc.bull[EXPIRED],
            withdrawn=acc.bull[WITHDRAWN],
            played_without_report=acc.bull["played_without_report"],
            priority=acc.bull["priority"],
            priority_played_in_validity=acc.bull["priority_played_in_validity"],
            essential=essential,
            essential_reached=acc.bull["essential_reached"],
            essential_reached_share=(
                round(acc.bull["essential_reached"] / essential, 4) if essential else None
            ),
        ),
        emergencies=EmergencyFigures(
            programmes=len(acc.em_programmes),
            clusters_targeted=prog["em_targeted"],
            clusters_reached=prog["em_reached"],
            p95_time_to_audible_s=round(p95, 3) if p95 is not None else None,
        ),
        availability=AvailabilityFigures(
            clusters=acc.clusters,
            online_share=round(acc.online_s / acc.measured_s, 4) if acc.measured_s else None,
            faulty_clusters=acc.faulty,
            longest_outage_s=round(acc.longest_s, 1),
        ),
        feedback=acc.feedback.figures(),
        selftest_failed=acc.selftest_failed,
    )


def summary_report(
    db: Session,
    *,
    actor: Actor,
    org_unit_id: int,
    period: str,
    start: str,
    end: str,
    now: datetime,
) -> SummaryOut:
    """The use case behind GET /reports/summary: parse the period, then compute."""
    unit = reach.load(db, actor, OrgUnit, org_unit_id)  # 404 before a 422 about the period
    window = periods.parse_period(period, start, end)
    return summary(db, actor=actor, org_unit_id=unit.id, period=window, now=now)
