"""Programmes: CRUD, the approval workflow, conflict checks and recurrence presets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schedules import PRESETS, Priority
from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import (
    PROGRAMMES_APPROVE,
    PROGRAMMES_CANCEL,
    PROGRAMMES_CREATE,
    PROGRAMMES_EDIT,
    PROGRAMMES_READ,
    SESSION,
    may_cancel,
)
from server.access.reach import (
    check_clip_ids,
    check_org_unit,
    check_zone_ids,
    visible_org_unit,
    visible_programme,
    visible_zone,
)
from server.audit import service as audit
from server.bounds import IdFilter, IdPath, Limit, Offset
from server.deps import SessionDep, SettingsDep, now_of
from server.planner import request_replan
from server.programmes import conflicts, service
from server.programmes.conflicts import conflict_days
from server.programmes.models import STATUSES, Programme, programme_zones
from server.programmes.schemas import (
    ConflictOut,
    ConflictReport,
    PresetOut,
    ProgrammeClipOut,
    ProgrammeCreate,
    ProgrammeDetail,
    ProgrammeFields,
    ProgrammeOut,
    ProgrammePage,
    ProgrammeUpdate,
    ReasonBody,
    TransitionOut,
)
from server.programmes.validation import ProgrammeError, check_fields, to_spec

router = APIRouter(tags=["programmes"])
Reader = Annotated[Actor, allow(PROGRAMMES_READ)]
Creator = Annotated[Actor, allow(PROGRAMMES_CREATE)]
Editor = Annotated[Actor, allow(PROGRAMMES_EDIT)]
Approver = Annotated[Actor, allow(PROGRAMMES_APPROVE)]
Canceller = Annotated[Actor, allow(PROGRAMMES_CANCEL)]


@contextmanager
def answering() -> Iterator[None]:
    """Turn a ProgrammeError into the HTTP answer it names."""
    try:
        yield
    except ProgrammeError as exc:
        raise HTTPException(exc.status, detail=exc.detail) from None


def _audit(db: Session, actor: Actor, action: str, programme: Programme, note: str = "") -> None:
    audit.record(
        db,
        actor=actor,
        action=action,
        object_type="programme",
        object_id=programme.id,
        org_unit_id=programme.org_unit_id,
        summary=programme.title,
        details={
            "status": programme.status,
            "priority": programme.priority,
            "zone_ids": sorted(z.id for z in programme.zones),
            **({"note": note} if note else {}),
        },
    )


def _check_refs(db: Session, actor: Actor, fields: dict[str, Any]) -> None:
    """Ids the caller may not see are refused as unknown, before any other check names them."""
    if fields.get("org_unit_id") is not None:
        check_org_unit(db, actor, fields["org_unit_id"])
    check_zone_ids(db, actor, fields.get("zone_ids") or [])
    check_clip_ids(db, actor, fields.get("clip_ids") or [])


def to_out(programme: Programme) -> ProgrammeOut:
    """Programme row -> API shape."""
    clips = [
        ProgrammeClipOut(
            id=pc.clip.id, title=pc.clip.title, sha256=pc.clip.sha256, duration_s=pc.clip.duration_s
        )
        for pc in programme.clips
    ]
    return ProgrammeOut(
        id=programme.id,
        title=programme.title,
        description=programme.description,
        priority=Priority(programme.priority),
        status=programme.status,
        clip_ids=[c.id for c in clips],
        clips=clips,
        duration_s=round(sum(c.duration_s for c in clips), 3),
        zone_ids=sorted(z.id for z in programme.zones),
        start=programme.start,
        rrule=programme.rrule,
        dtstart=programme.dtstart,
        valid_from=programme.valid_from,
        valid_until=programme.valid_until,
        volume=programme.volume,
        org_unit_id=programme.org_unit_id,
        created_by=programme.created_by,
        rejection_reason=programme.rejection_reason,
        created_at=programme.created_at,
        updated_at=programme.updated_at,
    )


def _detail(db: Session, programme: Programme) -> ProgrammeDetail:
    history = [
        TransitionOut.model_validate(t) for t in service.history(db, programme_id=programme.id)
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


def _replan(request: Request, db: Session) -> None:
    db.commit()  # the planner reads in its own session: it must see this change
    request_replan(request.app)


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
    query = select(Programme).where(actor.org_clause(Programme.org_unit_id))
    if status_ is not None:
        if status_ not in STATUSES:
            raise HTTPException(
                422, detail=f"Unknown status {status_[:40]!r}; use one of: {', '.join(STATUSES)}."
            )
        query = query.where(Programme.status == status_)
    if zone_id is not None:
        visible_zone(db, actor, zone_id)
        in_zone = select(programme_zones.c.programme_id).where(programme_zones.c.zone_id == zone_id)
        query = query.where(Programme.id.in_(in_zone))
    if org_unit_id is not None:
        visible_org_unit(db, actor, org_unit_id)
        query = query.where(Programme.org_unit_id == org_unit_id)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(query.order_by(Programme.id.desc()).limit(limit).offset(offset))
    return ProgrammePage(items=[to_out(p) for p in rows], total=total)


@router.post("/programmes", response_model=ProgrammeDetail, status_code=status.HTTP_201_CREATED)
def create_programme(
    db: SessionDep,
    request: Request,
    settings: SettingsDep,
    actor: Creator,
    body: ProgrammeCreate,
) -> ProgrammeDetail:
    """Create a draft (an emergency with approve_now=true is approved at once and planned).

    Operators and approvers (no programmes:edit) may only create such emergencies, and only
    with their can_emergency permission.
    """
    fields: dict[str, Any] = body.model_dump(exclude={"approve_now"})
    _check_refs(db, actor, fields)
    if not actor.may(PROGRAMMES_EDIT) and not body.approve_now:
        raise HTTPException(
            403,
            detail=f"Your role ({actor.role}) may only create an emergency approved at "
            "once (priority emergency, approve_now true).",
        )
    with answering():
        programme = service.create_programme(
            db,
            fields=fields,
            user=actor.user,
            now=now_of(request),
            approve_now=body.approve_now,
            horizon_days=conflict_days(settings),
            may_run_emergency=actor.may_run_emergency(),
        )
    _audit(db, actor, "programme.create", programme)
    if body.approve_now:
        _audit(db, actor, "programme.emergency", programme, note="emergency, approved at creation")
        _replan(request, db)
    return _detail(db, programme)


@router.post("/programmes/check", response_model=ConflictReport)
def check_programme(
    db: SessionDep,
    request: Request,
    settings: SettingsDep,
    actor: Creator,
    body: ProgrammeFields,
) -> ConflictReport:
    """Validate an unsaved programme and list the programmes it would conflict with."""
    now = now_of(request)
    fields = body.model_dump()
    _check_refs(db, actor, fields)
    with answering():
        checked = check_fields(db, fields=fields, user=actor.user, now=now)
        window, findings = conflicts.find_programme_conflicts(
            db, spec=checked.spec, now=now, horizon_days=conflict_days(settings)
        )
    return _report(window, findings)


@router.get("/programmes/{programme_id:int}", response_model=ProgrammeDetail)
def get_programme(db: SessionDep, actor: Reader, programme_id: IdPath) -> ProgrammeDetail:
    """One programme with its history."""
    return _detail(db, visible_programme(db, actor, programme_id))


@router.get("/programmes/{programme_id:int}/conflicts", response_model=ConflictReport)
def programme_conflicts(
    db: SessionDep,
    request: Request,
    settings: SettingsDep,
    actor: Reader,
    programme_id: IdPath,
) -> ConflictReport:
    """Programmes this one overlaps (same priority, shared zone) over the planning horizon."""
    programme = visible_programme(db, actor, programme_id)
    spec = to_spec(programme)
    if spec is None:
        raise HTTPException(409, detail=f"Programme {programme_id} has no clips or zones left.")
    window, findings = conflicts.find_programme_conflicts(
        db, spec=spec, now=now_of(request), horizon_days=conflict_days(settings)
    )
    return _report(window, findings)


@router.patch("/programmes/{programme_id:int}", response_model=ProgrammeDetail)
def update_programme(
    db: SessionDep,
    request: Request,
    actor: Editor,
    programme_id: IdPath,
    body: ProgrammeUpdate,
) -> ProgrammeDetail:
    """Edit a draft or rejected programme (a rejected one returns to draft)."""
    programme = visible_programme(db, actor, programme_id)
    changes = body.model_dump(exclude_unset=True)
    _check_refs(db, actor, changes)
    with answering():
        service.update_programme(
            db, programme=programme, changes=changes, user=actor.user, now=now_of(request)
        )
    _audit(db, actor, "programme.update", programme)
    return _detail(db, programme)


@router.delete("/programmes/{programme_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_programme(db: SessionDep, actor: Editor, programme_id: IdPath) -> None:
    """Delete a draft."""
    programme = visible_programme(db, actor, programme_id)
    _audit(db, actor, "programme.delete", programme)
    with answering():
        service.delete_programme(db, programme=programme)


@router.post("/programmes/{programme_id:int}/submit", response_model=ProgrammeDetail)
def submit_programme(
    db: SessionDep,
    request: Request,
    settings: SettingsDep,
    actor: Editor,
    programme_id: IdPath,
) -> ProgrammeDetail:
    """Send for approval; refused with 409 when it overlaps a same-priority programme."""
    programme = visible_programme(db, actor, programme_id)
    with answering():
        service.submit(
            db,
            programme=programme,
            user=actor.user,
            now=now_of(request),
            horizon_days=conflict_days(settings),
        )
    _audit(db, actor, "programme.submit", programme)
    return _detail(db, programme)


@router.post("/programmes/{programme_id:int}/approve", response_model=ProgrammeDetail)
def approve_programme(
    db: SessionDep,
    request: Request,
    settings: SettingsDep,
    actor: Approver,
    programme_id: IdPath,
    body: ReasonBody | None = None,
) -> ProgrammeDetail:
    """Approve a submitted programme of your subtree; the planner then publishes it."""
    programme = visible_programme(db, actor, programme_id)
    note = body.reason if body else ""
    with answering():
        service.approve(
            db,
            programme=programme,
            user=actor.user,
            now=now_of(request),
            horizon_days=conflict_days(settings),
            note=note,
        )
    _audit(db, actor, "programme.approve", programme, note=note)
    _replan(request, db)
    return _detail(db, programme)


@router.post("/programmes/{programme_id:int}/reject", response_model=ProgrammeDetail)
def reject_programme(
    db: SessionDep, request: Request, actor: Approver, programme_id: IdPath, body: ReasonBody
) -> ProgrammeDetail:
    """Send a submitted programme back; the reason is required."""
    programme = visible_programme(db, actor, programme_id)
    with answering():
        service.reject(
            db, programme=programme, user=actor.user, now=now_of(request), reason=body.reason
        )
    _audit(db, actor, "programme.reject", programme, note=body.reason)
    return _detail(db, programme)


@router.post("/programmes/{programme_id:int}/cancel", response_model=ProgrammeDetail)
def cancel_programme(
    db: SessionDep,
    request: Request,
    actor: Canceller,
    programme_id: IdPath,
    body: ReasonBody | None = None,
) -> ProgrammeDetail:
    """Cancel a programme that has not ended; devices get a schedule without it.

    Approvers and admins cancel anything; editors only what is not approved yet;
    operators only emergencies.
    """
    programme = visible_programme(db, actor, programme_id)
    if not may_cancel(role=actor.role, status=programme.status, priority=programme.priority):
        raise HTTPException(
            403,
            detail=f"Your role ({actor.role}) may not cancel a {programme.status} "
            f"{programme.priority} programme; ask an approver.",
        )
    note = body.reason if body else ""
    with answering():
        was_planned = service.cancel(
            db, programme=programme, user=actor.user, now=now_of(request), note=note
        )
    _audit(db, actor, "programme.cancel", programme, note=note)
    if was_planned:
        _replan(request, db)
    return _detail(db, programme)
