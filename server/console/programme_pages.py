"""Programme pages: list and week view per zone, the new-programme form, details, approvals."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import MAX_RELAY_S, PRESETS, Priority, local_tz, to_local_wall, wall_to_utc
from server.access import policy, reach
from server.access.actor import Actor
from server.bounds import IdFilter, IdPath
from server.clips.models import Clip
from server.console.dashboard import occurrences
from server.console.dates import default_start
from server.console.render import page
from server.console.session import ConsoleActor
from server.console.zones import unit_names
from server.deps import SessionDep, SettingsDep, now_of
from server.orgs.models import OrgUnit, Zone
from server.programmes import conflicts, items, workflow
from server.programmes.conflicts import conflict_days
from server.programmes.models import (
    ACTIVE,
    APPROVED,
    DRAFT,
    REJECTED,
    STATUSES,
    SUBMITTED,
    Programme,
    programme_zones,
)
from server.programmes.validation import announce_of, to_spec
from server.relay.models import RelaySource

router = APIRouter(include_in_schema=False)
WEEK_STATUSES = (DRAFT, SUBMITTED, APPROVED, ACTIVE)


def my_zones(db: Session, actor: Actor) -> list[Zone]:
    """Zones of the caller's subtree, by name."""
    query = select(Zone).where(reach.reachable(actor, Zone)).order_by(Zone.name, Zone.id)
    return list(db.scalars(query))


def default_zone(db: Session, actor: Actor, zones: list[Zone]) -> Zone | None:
    """The week view's zone: the one the user scheduled last, else one of the user's own
    org unit, else the first by name (the alphabetically first is rarely the one wanted)."""
    if not zones:
        return None
    by_id = {z.id: z for z in zones}
    latest = db.scalars(
        select(programme_zones.c.zone_id)
        .join(Programme, Programme.id == programme_zones.c.programme_id)
        .where(Programme.created_by == actor.user.id)
        .order_by(Programme.updated_at.desc(), Programme.id.desc())
        .limit(20)
    )
    for zone_id in latest:
        if zone_id in by_id:
            return by_id[zone_id]
    own = [z for z in zones if z.org_unit_id == actor.user.org_unit_id]
    return own[0] if own else zones[0]


def relay_choices(db: Session, actor: Actor) -> list[RelaySource]:
    """Enabled relay sources of the caller's units and the units above them, by name."""
    query = select(RelaySource).where(
        RelaySource.enabled.is_(True), actor.clip_clause(RelaySource.org_unit_id)
    )
    return list(db.scalars(query.order_by(RelaySource.name, RelaySource.id).limit(500)))


def units_above(db: Session, actor: Actor, owners: list[OrgUnit]) -> dict[int, list[int]]:
    """Each owner unit with the ids from it up to the root: whose relay sources it may use."""
    parents = {u.id: u.parent_id for u in owners}
    if actor.ancestor_org_ids:
        rows = db.execute(
            select(OrgUnit.id, OrgUnit.parent_id).where(OrgUnit.id.in_(actor.ancestor_org_ids))
        )
        parents.update({int(i): p for i, p in rows})
    out: dict[int, list[int]] = {}
    for unit in owners:
        chain: list[int] = []
        current: int | None = unit.id
        while current is not None and current not in chain:
            chain.append(current)
            current = parents.get(current)
        out[unit.id] = chain
    return out


def week_start(day: date) -> date:
    """The Monday of the week holding `day`."""
    return day - timedelta(days=day.weekday())


@router.get("/programmes", response_class=HTMLResponse)
def programmes_page(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    zone_id: IdFilter = None,
    week: date | None = None,
    status: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    """The user's programmes and, for one zone, what plays each day of a week."""
    query = select(Programme).where(reach.reachable(actor, Programme))
    if status in STATUSES:
        query = query.where(Programme.status == status)
    zones = my_zones(db, actor)
    zone = reach.load(db, actor, Zone, zone_id) if zone_id else default_zone(db, actor, zones)
    if zone is not None and zone_id:
        in_zone = select(programme_zones.c.programme_id).where(programme_zones.c.zone_id == zone.id)
        query = query.where(Programme.id.in_(in_zone))
    programmes = list(db.scalars(query.order_by(Programme.id.desc()).limit(200)))
    monday = week_start(week or to_local_wall(now_of(request)).date())
    days: list[tuple[date, list[object]]] = []
    if zone is not None:
        since = wall_to_utc(datetime.combine(monday, time(0, 0)), tz=local_tz())
        found = [
            o
            for o in occurrences(
                db, actor, since=since, until=since + timedelta(days=7), statuses=WEEK_STATUSES
            )
            if zone.id in {z.id for z in o.programme.zones}
        ]
        for i in range(7):
            day = monday + timedelta(days=i)
            days.append((day, [o for o in found if to_local_wall(o.start).date() == day]))
    return page(
        request,
        "programmes.html",
        actor=actor,
        units=unit_names(db, actor),
        active="programmes",
        programmes=programmes,
        zones=zones,
        zone=zone,
        days=days,
        monday=monday,
        prev_week=monday - timedelta(days=7),
        next_week=monday + timedelta(days=7),
        status=status,
        statuses=STATUSES,
    )


@router.get("/programmes/new", response_class=HTMLResponse)
def new_programme_page(request: Request, db: SessionDep, actor: ConsoleActor) -> HTMLResponse:
    """The form for a new programme: clips and relays, zones, when, priority."""
    if not actor.may(policy.PROGRAMMES_CREATE):
        raise HTTPException(403, detail="")
    clips = list(
        db.scalars(
            select(Clip)
            .where(reach.reachable(actor, Clip))
            .order_by(Clip.created_at.desc())
            .limit(300)
        )
    )
    owners = list(
        db.scalars(select(OrgUnit).where(reach.reachable(actor, OrgUnit)).order_by(OrgUnit.id))
    )
    now_local = to_local_wall(now_of(request))
    start = default_start(now_local)
    today = start.date()
    return page(
        request,
        "programme_new.html",
        actor=actor,
        units=unit_names(db, actor),
        active="programmes",
        clips=clips,
        relay_sources=relay_choices(db, actor),
        units_above=units_above(db, actor, owners),
        max_relay_minutes=int(MAX_RELAY_S // 60),
        zones=my_zones(db, actor),
        owners=owners,
        presets=list(PRESETS.values()),
        today=today,
        start=start,
        server_now_ms=int(now_of(request).timestamp() * 1000),
        may_edit=actor.may(policy.PROGRAMMES_EDIT),
        may_emergency=actor.may_run_emergency(),
    )


# History notes the server itself writes (programmes.service), shown through the catalogue.
SYSTEM_NOTES = {
    "created": "prog.note.created",
    "emergency, approved at creation": "prog.note.emergency_created",
    "edited": "prog.note.edited",
    "first playback": "prog.note.first_playback",
    "last playback over": "prog.note.last_playback",
}


@router.get("/programmes/{programme_id}", response_class=HTMLResponse)
def programme_page(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    actor: ConsoleActor,
    programme_id: IdPath,
) -> HTMLResponse:
    """One programme: what, when, where, its history and the actions the user may take."""
    programme = reach.load(db, actor, Programme, programme_id)
    findings: list[conflicts.ConflictFinding] = []
    spec = to_spec(programme)
    if spec is not None and programme.status in (DRAFT, REJECTED, SUBMITTED):
        _window, findings = conflicts.find_programme_conflicts(
            db, spec=spec, now=now_of(request), horizon_days=conflict_days(settings)
        )
    mode = programme.announcement_mode
    announce = announce_of(priority=Priority(programme.priority), mode=mode, zones=programme.zones)
    return page(
        request,
        "programme.html",
        actor=actor,
        units=unit_names(db, actor),
        active="programmes",
        p=programme,
        items=items.stored(programme),
        history=workflow.history(db, programme_id=programme.id),
        system_notes=SYSTEM_NOTES,
        findings=findings,
        presets={p.rrule: p for p in PRESETS.values()},
        announce=announce,
        may_cancel=actor.may(policy.PROGRAMMES_CANCEL)
        and policy.may_cancel(role=actor.role, status=programme.status, priority=programme.priority)
        and programme.status not in ("ended", "cancelled"),
    )


@router.get("/approvals", response_class=HTMLResponse)
def approvals_page(
    request: Request, db: SessionDep, settings: SettingsDep, actor: ConsoleActor
) -> HTMLResponse:
    """Programmes of the approver's subtree waiting for a decision, with their conflicts."""
    if not actor.may(policy.PROGRAMMES_APPROVE):
        raise HTTPException(403, detail="")
    query = select(Programme).where(
        Programme.status == SUBMITTED, reach.reachable(actor, Programme)
    )
    waiting = []
    for programme in db.scalars(query.order_by(Programme.updated_at)):
        spec = to_spec(programme)
        found: list[conflicts.ConflictFinding] = []
        if spec is not None:
            _w, found = conflicts.find_programme_conflicts(
                db,
                spec=spec,
                now=now_of(request),
                horizon_days=conflict_days(settings),
                statuses=conflicts.COMPETING_AT_APPROVAL,
            )
        waiting.append((programme, found))
    return page(
        request,
        "approvals.html",
        actor=actor,
        units=unit_names(db, actor),
        active="approvals",
        waiting=waiting,
        presets={p.rrule: p for p in PRESETS.values()},
    )
