"""Programmes: CRUD, the approval workflow, conflict checks and recurrence presets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schedules import PRESETS, Priority
from server.access import reach
from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import (
    PROGRAMMES_APPROVE,
    PROGRAMMES_CANCEL,
    PROGRAMMES_CREATE,
    PROGRAMMES_EDIT,
    PROGRAMMES_READ,
    SESSION,
)
from server.bounds import IdFilter, IdPath, Limit, Offset
from server.deps import Now, SessionDep, SettingsDep
from server.orgs.models import OrgUnit, Zone
from server.programmes import conflicts, items, service, workflow
from server.programmes.conflicts import conflict_days
from server.programmes.models import STATUSES, Programme, ProgrammeClip, programme_zones
from server.programmes.schemas import (
    ConflictOut,
    ConflictReport,
    ItemOut,
    PresetOut,
    ProgrammeClipOut,
    ProgrammeCreate,
    ProgrammeDetail,
    ProgrammeFields,
    ProgrammeOut,
    ProgrammePage,
    ProgrammeUpdate,
    ReasonBody,
    RelayOut,
    TransitionOut,
)
from server.programmes.validation import to_spec

router = APIRouter(tags=["programmes"])
Reader = Annotated[Actor, allow(PROGRAMMES_READ)]
Creator = Annotated[Actor, allow(PROGRAMMES_CREATE)]
Editor = Annotated[Actor, allow(PROGRAMMES_EDIT)]
Approver = Annotated[Actor, allow(PROGRAMMES_APPROVE)]
Canceller = Annotated[Actor, allow(PROGRAMMES_CANCEL)]


def _clip_out(pc: ProgrammeClip) -> ProgrammeClipOut:
    clip = pc.clip
    return ProgrammeClipOut(
        id=clip.id, title=clip.title, sha256=clip.sha256, duration_s=clip.duration_s
    )


def items_out(programme: Programme) -> list[ItemOut]:
    """The programme's clips and relays in playing order."""
    out: list[ItemOut] = []
    for row in items.stored(programme):
        if isinstance(row, ProgrammeClip):
            out.append(ItemOut(kind="clip", position=row.position, clip=_clip_out(row)))
            continue
        relay = RelayOut(
            relay_source_id=row.relay_source_id, relay_source_name=row.source.name,
            duration_s=row.duration_s, fallback_clip_id=row.fallback_clip_id,
            fallback_title=row.fallback.title,
        )  # fmt: skip
        out.append(ItemOut(kind="relay", position=row.position, relay=relay))
    return out


def to_out(programme: Programme) -> ProgrammeOut:
    """Programme row -> API shape."""
    clips = [_clip_out(pc) for pc in programme.clips]
    return ProgrammeOut(
        id=programme.id,
        title=programme.title,
        description=programme.description,
        display_text=programme.display_text or "",
        priority=Priority(programme.priority),
        status=programme.status,
        clip_ids=[c.id for c in clips],
        clips=clips,
        items=items_out(programme),
        duration_s=round(items.duration_s(programme), 3),
        zone_ids=sorted(z.id for z in programme.zones),
        start=programme.start,
        rrule=programme.rrule,
        dtstart=programme.dtstart,
        valid_from=programme.valid_from,
        valid_until=programme.valid_until,
        volume=programme.volume,
        org_unit_id=programme.org_unit_id,
        announcement_mode=programme.announcement_mode,
        duck_db=programme.duck_db,
        duck_ramp_ms=programme.duck_ramp_ms,
        created_by=programme.created_by,
        rejection_reason=programme.rejection_reason,
        created_at=programme.created_at,
        updated_at=programme.updated_at,
    )


def _detail(db: Session, programme: Programme) -> ProgrammeDetail:
    history = [
        TransitionOut.model_validate(t) for t in workflow.history(db, programme_id=programme.id)
    ]
    return ProgrammeDetail(**to_out(programme).model_dump(), history=history)


def _report(
    window: tuple[datetime, datetime], findings: list[conflicts.ConflictFinding]
) -> ConflictReport:
    return ConflictReport(
        window_start=window[0],
        window_end=window[1],
        conflicts=[
            ConflictOut(
                other_programme_id=f.conflict.other_programme_id,
                other_title=f.conflict.other_title,
                other_status=f.other_status,
                priority=f.conflict.priority,
                zone_ids=list(f.conflict.zone_ids),
                first_overlap_start=f.conflict.first_overlap_start,
                first_overlap_end=f.conflict.first_overlap_end,
                message=f.message,
            )
            for f in findings
        ],
    )


@router.get("/programmes/presets", response_model=list[PresetOut])
def list_presets(_actor: Annotated[Actor, allow(SESSION)]) -> list[PresetOut]:
    """Ready-made recurrence rules (use the key as recurrence_preset)."""
    return [
        PresetOut(key=p.key, rrule=p.rrule, label_vi=p.label_vi, label_en=p.label_en)
        for p in PRESETS.values()
    ]


@router.get("/programmes", response_model=ProgrammePage)
def list_programmes(
    db: SessionDep,
    actor: Reader,
    status_: Annotated[str | None, Query(alias="status", max_length=40)] = None,
    zone_id: IdFilter = None,
    org_unit_id: IdFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> ProgrammePage:
    """Programmes of your subtree, newest first, filtered by status, zone and owner org unit."""
    query = select(Programme).where(reach.reachable(actor, Programme))
    if status_ is not None:
        if status_ not in STATUSES:
            raise HTTPException(
                422, detail=f"Unknown status {status_[:40]!r}; use one of: {', '.join(STATUSES)}."
            )
        query = query.where(Programme.status == status_)
    if zone_id is not None:
        reach.load(db, actor, Zone, zone_id)
        in_zone = select(programme_zones.c.programme_id).where(programme_zones.c.zone_id == zone_id)
        query = query.where(Programme.id.in_(in_zone))
    if org_unit_id is not None:
        reach.load(db, actor, OrgUnit, org_unit_id)
        query = query.where(Programme.org_unit_id == org_unit_id)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(query.order_by(Programme.id.desc()).limit(limit).offset(offset))
    return ProgrammePage(items=[to_out(p) for p in rows], total=total)


@router.post("/programmes", response_model=ProgrammeDetail, status_code=status.HTTP_201_CREATED)
def create_programme(
    db: SessionDep, settings: SettingsDep, now: Now, actor: Creator, body: ProgrammeCreate
) -> ProgrammeDetail:
    """Create a draft (an emergency with approve_now=true is approved at once and planned).

    Operators and approvers (no programmes:edit) may only create such emergencies, and only
    with their can_emergency permission.
    """
    programme = service.create(
        db,
        actor=actor,
        fields=body.model_dump(exclude={"approve_now"}),
        approve_now=body.approve_now,
        now=now,
        horizon_days=conflict_days(settings),
        settings=settings,
    )
    return _detail(db, programme)


@router.post("/programmes/check", response_model=ConflictReport)
def check_programme(
    db: SessionDep, settings: SettingsDep, now: Now, actor: Creator, body: ProgrammeFields
) -> ConflictReport:
    """Validate an unsaved programme and list the programmes it would conflict with."""
    window, findings = service.check(
        db, actor=actor, fields=body.model_dump(), now=now, horizon_days=conflict_days(settings),
        settings=settings,
    )  # fmt: skip
    return _report(window, findings)


@router.get("/programmes/{programme_id:int}", response_model=ProgrammeDetail)
def get_programme(db: SessionDep, actor: Reader, programme_id: IdPath) -> ProgrammeDetail:
    """One programme with its history."""
    return _detail(db, reach.load(db, actor, Programme, programme_id))


@router.get("/programmes/{programme_id:int}/conflicts", response_model=ConflictReport)
def programme_conflicts(
    db: SessionDep,
    settings: SettingsDep,
    now: Now,
    actor: Reader,
    programme_id: IdPath,
) -> ConflictReport:
    """Programmes this one overlaps (same priority, shared zone) over the planning horizon."""
    programme = reach.load(db, actor, Programme, programme_id)
    spec = to_spec(programme)
    if spec is None:
        raise HTTPException(
            409, detail=f"Programme {programme_id} has no clips, relays or zones left."
        )
    window, findings = conflicts.find_programme_conflicts(
        db, spec=spec, now=now, horizon_days=conflict_days(settings)
    )
    return _report(window, findings)


@router.patch("/programmes/{programme_id:int}", response_model=ProgrammeDetail)
def update_programme(
    db: SessionDep,
    settings: SettingsDep,
    now: Now,
    actor: Editor,
    programme_id: IdPath,
    body: ProgrammeUpdate,
) -> ProgrammeDetail:
    """Edit a draft or rejected programme (a rejected one returns to draft)."""
    changes = body.model_dump(exclude_unset=True)
    programme = service.update(
        db, actor=actor, programme_id=programme_id, changes=changes, now=now, settings=settings
    )
    return _detail(db, programme)


@router.delete("/programmes/{programme_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_programme(db: SessionDep, actor: Editor, programme_id: IdPath) -> None:
    """Delete a draft."""
    service.delete(db, actor=actor, programme_id=programme_id)


@router.post("/programmes/{programme_id:int}/submit", response_model=ProgrammeDetail)
def submit_programme(
    db: SessionDep, settings: SettingsDep, now: Now, actor: Editor, programme_id: IdPath
) -> ProgrammeDetail:
    """Send for approval; refused with 409 when it overlaps a same-priority programme."""
    programme = service.submit(
        db, actor=actor, programme_id=programme_id, now=now, horizon_days=conflict_days(settings)
    )
    return _detail(db, programme)


@router.post("/programmes/{programme_id:int}/approve", response_model=ProgrammeDetail)
def approve_programme(
    db: SessionDep,
    settings: SettingsDep,
    now: Now,
    actor: Approver,
    programme_id: IdPath,
    body: ReasonBody | None = None,
) -> ProgrammeDetail:
    """Approve a submitted programme of your subtree; the planner then publishes it."""
    programme = service.approve(
        db,
        actor=actor,
        programme_id=programme_id,
        now=now,
        horizon_days=conflict_days(settings),
        note=body.reason if body else "",
    )
    return _detail(db, programme)


@router.post("/programmes/{programme_id:int}/reject", response_model=ProgrammeDetail)
def reject_programme(
    db: SessionDep, now: Now, actor: Approver, programme_id: IdPath, body: ReasonBody
) -> ProgrammeDetail:
    """Send a submitted programme back; the reason is required."""
    programme = service.reject(
        db, actor=actor, programme_id=programme_id, now=now, reason=body.reason
    )
    return _detail(db, programme)


@router.post("/programmes/{programme_id:int}/cancel", response_model=ProgrammeDetail)
def cancel_programme(
    db: SessionDep, now: Now, actor: Canceller, programme_id: IdPath, body: ReasonBody | None = None
) -> ProgrammeDetail:
    """Cancel a programme that has not ended; devices get a schedule without it.

    Approvers and admins cancel anything; editors only what is not approved yet;
    operators only emergencies.
    """
    programme = service.cancel(
        db, actor=actor, programme_id=programme_id, now=now, note=body.reason if body else ""
    )
    return _detail(db, programme)
