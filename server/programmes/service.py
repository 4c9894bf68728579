"""Programme use cases: each checks reach, applies the rules, audits and emits its events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.access.policy import PROGRAMMES_EDIT, may_cancel
from server.audit import service as audit
from server.clips.models import Clip
from server.domain import DomainError
from server.events.outbox import emit
from server.events.types import ReplanNeeded
from server.orgs.models import Zone
from server.programmes import conflicts, items, workflow
from server.programmes.models import Programme
from server.programmes.validation import check_fields, display_text_of
from server.settings import ServerSettings


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
        reach.check_org_unit(db, actor, fields["org_unit_id"])
    reach.check_ids(db, actor, Zone, fields.get("zone_ids") or [])
    reach.check_ids(db, actor, Clip, items.clip_ids_of(items.requested(fields) or []))


def _spoken(
    db: Session,
    actor: Actor,
    fields: dict[str, Any],
    settings: ServerSettings | None,
    org_unit_id: int | None,
) -> dict[str, Any]:
    """The fields with each TTS item spoken into a clip of the programme's org unit.

    With no display_text given, e-boards show the TTS text (joined, cut to the limit).
    """
    wanted = items.requested(fields)
    if wanted is None or not any(item.get("kind") == "tts" for item in wanted):
        return fields
    spoken = items.speak_items(
        db, actor=actor, settings=settings, items=wanted, org_unit_id=org_unit_id,
        title=str(fields.get("title") or "TTS"),
    )  # fmt: skip
    out = {**fields, "items": spoken, "clip_ids": None}
    if not str(fields.get("display_text") or "").strip():
        said = [str(item["text"]).strip() for item in wanted if item.get("kind") == "tts"]
        out["display_text"] = display_text_of("\n\n".join(t for t in said if t))
    return out


def _replan(db: Session, programme: Programme, why: str) -> None:
    emit(db, ReplanNeeded(reason=f"programme {programme.id} {why}"))


def create(
    db: Session,
    *,
    actor: Actor,
    fields: dict[str, Any],
    approve_now: bool,
    now: datetime,
    horizon_days: int,
    settings: ServerSettings | None = None,
) -> Programme:
    """Create a draft, or an emergency approved at once (then planned at once).

    TTS items are spoken into clips first (blocking: the TTS engine and ffmpeg).
    """
    _check_refs(db, actor, fields)
    if not actor.may(PROGRAMMES_EDIT) and not approve_now:
        raise DomainError(
            403,
            f"Your role ({actor.role}) may only create an emergency approved at "
            "once (priority emergency, approve_now true).",
        )
    owner = fields.get("org_unit_id") or actor.user.org_unit_id
    fields = _spoken(db, actor, fields, settings, owner)
    programme = workflow.create_programme(
        db,
        fields=fields,
        user=actor.user,
        now=now,
        approve_now=approve_now,
        horizon_days=horizon_days,
        may_run_emergency=actor.may_run_emergency(),
    )
    _audit(db, actor, "programme.create", programme)
    if approve_now:
        _audit(db, actor, "programme.emergency", programme, note="emergency, approved at creation")
        _replan(db, programme, "approved at creation")
    return programme


def check(
    db: Session,
    *,
    actor: Actor,
    fields: dict[str, Any],
    now: datetime,
    horizon_days: int,
    settings: ServerSettings | None = None,
) -> tuple[tuple[datetime, datetime], list[conflicts.ConflictFinding]]:
    """Validate unsaved fields and list the programmes they would conflict with.

    TTS items are spoken into clips (kept: the same text makes the same clip on create).
    """
    _check_refs(db, actor, fields)
    owner = fields.get("org_unit_id") or actor.user.org_unit_id
    fields = _spoken(db, actor, fields, settings, owner)
    checked = check_fields(db, fields=fields, user=actor.user, now=now)
    return conflicts.find_programme_conflicts(
        db, spec=checked.spec, now=now, horizon_days=horizon_days
    )


def update(
    db: Session,
    *,
    actor: Actor,
    programme_id: int,
    changes: dict[str, Any],
    now: datetime,
    settings: ServerSettings | None = None,
) -> Programme:
    """Edit a draft or rejected programme of the caller's subtree (TTS items: see create)."""
    programme = reach.load(db, actor, Programme, programme_id)
    _check_refs(db, actor, changes)
    if programme.status in workflow.EDITABLE:  # else the workflow refuses, with nothing spoken
        owner = changes.get("org_unit_id") or programme.org_unit_id
        changes = _spoken(db, actor, changes, settings, owner)
    workflow.update_programme(db, programme=programme, changes=changes, user=actor.user, now=now)
    _audit(db, actor, "programme.update", programme)
    return programme


def delete(db: Session, *, actor: Actor, programme_id: int) -> None:
    """Delete a draft of the caller's subtree."""
    programme = reach.load(db, actor, Programme, programme_id)
    _audit(db, actor, "programme.delete", programme)
    workflow.delete_programme(db, programme=programme)


def submit(
    db: Session, *, actor: Actor, programme_id: int, now: datetime, horizon_days: int
) -> Programme:
    """Send a programme for approval (refused when it overlaps a same-priority one)."""
    programme = reach.load(db, actor, Programme, programme_id)
    workflow.submit(db, programme=programme, user=actor.user, now=now, horizon_days=horizon_days)
    _audit(db, actor, "programme.submit", programme)
    return programme


def approve(
    db: Session, *, actor: Actor, programme_id: int, now: datetime, horizon_days: int, note: str
) -> Programme:
    """Approve a submitted programme; once committed, the planner publishes the schedules."""
    programme = reach.load(db, actor, Programme, programme_id)
    workflow.approve(
        db, programme=programme, user=actor.user, now=now, horizon_days=horizon_days, note=note
    )
    _audit(db, actor, "programme.approve", programme, note=note)
    _replan(db, programme, "approved")
    return programme


def reject(
    db: Session, *, actor: Actor, programme_id: int, now: datetime, reason: str
) -> Programme:
    """Send a submitted programme back with the reason."""
    programme = reach.load(db, actor, Programme, programme_id)
    workflow.reject(db, programme=programme, user=actor.user, now=now, reason=reason)
    _audit(db, actor, "programme.reject", programme, note=reason)
    return programme


def cancel(db: Session, *, actor: Actor, programme_id: int, now: datetime, note: str) -> Programme:
    """Cancel a programme that has not ended; devices then get schedules without it."""
    programme = reach.load(db, actor, Programme, programme_id)
    if not may_cancel(role=actor.role, status=programme.status, priority=programme.priority):
        raise DomainError(
            403,
            f"Your role ({actor.role}) may not cancel a {programme.status} "
            f"{programme.priority} programme; ask an approver.",
        )
    was_planned = workflow.cancel(db, programme=programme, user=actor.user, now=now, note=note)
    _audit(db, actor, "programme.cancel", programme, note=note)
    if was_planned:
        _replan(db, programme, "cancelled")
    return programme
