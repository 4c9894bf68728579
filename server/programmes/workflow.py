"""Programme rules: the status machine, field checks on save, the lifecycle the planner runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import Priority, ProgrammeSpec
from server.programmes import items, lifecycle
from server.programmes.conflicts import (
    COMPETING_AT_APPROVAL,
    COMPETING_AT_SUBMIT,
    refuse_conflicts,
)
from server.programmes.models import (
    ACTIVE,
    APPROVED,
    CANCELLED,
    DRAFT,
    ENDED,
    FINISHED,
    PLANNED,
    REJECTED,
    SUBMITTED,
    Programme,
    ProgrammeTransition,
)
from server.programmes.validation import (
    CheckedFields,
    ProgrammeError,
    check_fields,
    specs_of,
    to_spec,
)
from server.users.models import User

APPROVER_ROLES = frozenset({"admin", "approver"})
# Which status may follow which; anything else is refused with a 409.
ALLOWED: dict[str, frozenset[str]] = {
    DRAFT: frozenset({SUBMITTED, APPROVED, CANCELLED}),
    SUBMITTED: frozenset({APPROVED, REJECTED, CANCELLED}),
    REJECTED: frozenset({DRAFT, SUBMITTED, CANCELLED}),
    APPROVED: frozenset({ACTIVE, ENDED, CANCELLED}),
    ACTIVE: frozenset({ENDED, CANCELLED}),
    ENDED: frozenset(),
    CANCELLED: frozenset(),
}
EDITABLE = (DRAFT, REJECTED)
TIMING_FIELDS = ("start", "rrule", "dtstart", "valid_from", "valid_until")
REQUIRED_FIELDS = frozenset(
    {
        "title",
        "description",
        "display_text",
        "priority",
        "clip_ids",
        "items",
        "zone_ids",
        "org_unit_id",
        "duck_db",
        "duck_ramp_ms",
    }
)


def planned_programmes(
    db: Session, *, timing: items.RelayTiming | None = None
) -> list[ProgrammeSpec]:
    """Every programme the planner must turn into playback items (approved or active)."""
    query = select(Programme).where(Programme.status.in_(PLANNED))
    return specs_of(db.scalars(query), timing=timing)


def _apply(programme: Programme, checked: CheckedFields) -> None:
    for key, value in checked.values.items():
        setattr(programme, key, value)
    programme.priority = checked.values["priority"].value
    items.apply(programme, checked.items)
    programme.zones = list(checked.zones)


def record(
    db: Session,
    *,
    programme: Programme,
    to: str,
    user_id: int | None,
    now: datetime,
    note: str = "",
) -> None:
    """Move a programme to status `to` and write the transition, or raise 409."""
    before = programme.status
    if to not in ALLOWED[before]:
        raise ProgrammeError(
            409, f"Programme {programme.id} is {before}; it cannot become {to} from there."
        )
    programme.status = to
    programme.updated_at = now
    db.add(
        ProgrammeTransition(
            programme_id=programme.id,
            from_status=before,
            to_status=to,
            user_id=user_id,
            at=now,
            note=note[:1000],
        )
    )


def create_programme(
    db: Session,
    *,
    fields: dict[str, Any],
    user: User,
    now: datetime,
    approve_now: bool,
    horizon_days: int,
    may_run_emergency: bool,
) -> Programme:
    """Store a new draft (or, for an emergency with approve_now, an approved programme)."""
    checked = check_fields(db, fields=fields, user=user, now=now)
    if approve_now:
        if checked.spec.priority is not Priority.EMERGENCY:
            raise ProgrammeError(422, "Only emergency programmes can be approved at creation.")
        if not may_run_emergency:
            raise ProgrammeError(
                403, "You may not run emergency broadcasts: an administrator grants that to "
                "operators and approvers (can_emergency).",
            )  # fmt: skip
        refuse_conflicts(
            db, spec=checked.spec, now=now, horizon_days=horizon_days, statuses=COMPETING_AT_SUBMIT
        )
    programme = Programme(status=DRAFT, created_by=user.id, created_at=now, updated_at=now)
    _apply(programme, checked)
    db.add(programme)
    db.flush()
    db.add(
        ProgrammeTransition(
            programme_id=programme.id, from_status=None, to_status=DRAFT, user_id=user.id, at=now,
            note="created",
        )
    )  # fmt: skip
    if approve_now:
        record(db, programme=programme, to=APPROVED, user_id=user.id, now=now,
               note="emergency, approved at creation")  # fmt: skip
    db.flush()
    return programme


def update_programme(
    db: Session, *, programme: Programme, changes: dict[str, Any], user: User, now: datetime
) -> Programme:
    """Edit a draft or rejected programme (a rejected one goes back to draft)."""
    if programme.status not in EDITABLE:
        raise ProgrammeError(
            409, f"Programme {programme.id} is {programme.status}; only drafts and rejected "
            "programmes can be edited (cancel it and create a new one instead).",
        )  # fmt: skip
    current: dict[str, Any] = {
        "title": programme.title,
        "description": programme.description,
        "display_text": programme.display_text or "",
        "priority": programme.priority,
        "items": items.as_input(programme),
        "zone_ids": [z.id for z in programme.zones],
        "volume": programme.volume,
        "org_unit_id": programme.org_unit_id,
        "announcement_mode": programme.announcement_mode,
        "duck_db": programme.duck_db,
        "duck_ramp_ms": programme.duck_ramp_ms,
        **{name: getattr(programme, name) for name in TIMING_FIELDS},
    }
    # null means "clear" only where a field may be empty; elsewhere it means "leave as is".
    changes = {k: v for k, v in changes.items() if v is not None or k not in REQUIRED_FIELDS}
    if "recurrence_preset" in changes and changes["recurrence_preset"] is not None:
        current["rrule"] = None  # the preset replaces the stored rule
    if changes.get("clip_ids") is not None and changes.get("items") is None:
        current["items"] = None  # clip_ids replace the whole content
    merged = {**current, **changes}
    checked = check_fields(db, fields=merged, user=user, now=now, programme_id=programme.id)
    _apply(programme, checked)
    programme.updated_at = now
    if programme.status == REJECTED:
        record(db, programme=programme, to=DRAFT, user_id=user.id, now=now, note="edited")
    db.flush()
    return programme


def delete_programme(db: Session, *, programme: Programme) -> None:
    """Delete a draft; anything further along is cancelled instead, to keep its history."""
    if programme.status != DRAFT:
        raise ProgrammeError(
            409, f"Programme {programme.id} is {programme.status}; only drafts can be deleted "
            "(cancel it instead).",
        )  # fmt: skip
    db.delete(programme)
    db.flush()


# -- workflow ----------------------------------------------------------------------------------


def _spec_or_error(programme: Programme) -> ProgrammeSpec:
    spec = to_spec(programme)
    if spec is None:
        raise ProgrammeError(
            409, f"Programme {programme.id} has no clips, relays or zones left; edit it first."
        )
    return spec


def submit(
    db: Session, *, programme: Programme, user: User, now: datetime, horizon_days: int
) -> None:
    """Send a draft (or rejected programme) for approval, refusing same-priority overlaps."""
    if programme.status not in EDITABLE:
        record(db, programme=programme, to=SUBMITTED, user_id=user.id, now=now)  # raises 409
    spec = _spec_or_error(programme)
    if spec.start is not None and spec.start < now:
        raise ProgrammeError(422, f"The start time {spec.start:%Y-%m-%d %H:%M:%S} UTC has passed.")
    if not lifecycle.plays_after(spec, now=now):
        raise ProgrammeError(422, "This programme never plays from now on; check its dates.")
    refuse_conflicts(
        db, spec=spec, now=now, horizon_days=horizon_days, statuses=COMPETING_AT_SUBMIT
    )
    record(db, programme=programme, to=SUBMITTED, user_id=user.id, now=now)


def approve(
    db: Session, *, programme: Programme, user: User, now: datetime, horizon_days: int, note: str
) -> None:
    """Approve a submitted programme (approvers and admins only)."""
    if user.role not in APPROVER_ROLES:
        raise ProgrammeError(403, "Only an approver or an administrator may approve programmes.")
    if programme.status != SUBMITTED:
        raise ProgrammeError(
            409, f"Programme {programme.id} is {programme.status}; only a submitted programme "
            "can be approved.",
        )  # fmt: skip
    spec = _spec_or_error(programme)
    refuse_conflicts(
        db, spec=spec, now=now, horizon_days=horizon_days, statuses=COMPETING_AT_APPROVAL
    )
    record(db, programme=programme, to=APPROVED, user_id=user.id, now=now, note=note)


def reject(db: Session, *, programme: Programme, user: User, now: datetime, reason: str) -> None:
    """Send a submitted programme back with a reason."""
    if user.role not in APPROVER_ROLES:
        raise ProgrammeError(403, "Only an approver or an administrator may reject programmes.")
    if not reason.strip():
        raise ProgrammeError(422, "Say why the programme is rejected (reason is empty).")
    if programme.status != SUBMITTED:
        raise ProgrammeError(
            409, f"Programme {programme.id} is {programme.status}; only a submitted programme "
            "can be rejected.",
        )  # fmt: skip
    programme.rejection_reason = reason.strip()[:1000]
    record(db, programme=programme, to=REJECTED, user_id=user.id, now=now, note=reason.strip())


def cancel(db: Session, *, programme: Programme, user: User, now: datetime, note: str) -> bool:
    """Cancel a programme that has not finished; True when it was being planned."""
    was_planned = programme.status in PLANNED
    if programme.status in FINISHED:
        raise ProgrammeError(409, f"Programme {programme.id} is already {programme.status}.")
    record(db, programme=programme, to=CANCELLED, user_id=user.id, now=now, note=note)
    return was_planned


def advance_lifecycle(db: Session, *, now: datetime) -> list[tuple[int, str, str]]:
    """Approved -> active at the first playback, -> ended once the last slot closed; the moves."""
    moves: list[tuple[int, str, str]] = []
    for programme in db.scalars(select(Programme).where(Programme.status.in_(PLANNED))):
        spec = to_spec(programme)
        if spec is None:
            continue
        if programme.status == APPROVED and lifecycle.has_started(spec, now=now):
            record(db, programme=programme, to=ACTIVE, user_id=None, now=now, note="first playback")
            moves.append((programme.id, APPROVED, ACTIVE))
        if not lifecycle.slot_open_after(spec, now=now):
            before = programme.status
            record(
                db, programme=programme, to=ENDED, user_id=None, now=now, note="last playback over"
            )
            moves.append((programme.id, before, ENDED))
    db.flush()
    return moves


def history(db: Session, *, programme_id: int) -> list[ProgrammeTransition]:
    """A programme's transitions, oldest first."""
    query = (
        select(ProgrammeTransition)
        .where(ProgrammeTransition.programme_id == programme_id)
        .order_by(ProgrammeTransition.at, ProgrammeTransition.id)
    )
    return list(db.scalars(query))


def programme_using_clip(db: Session, *, clip_id: int) -> str | None:
    """Title of an unfinished programme that plays the clip or keeps it as a fallback."""
    titles = items.programmes_using_clip(db, clip_id=clip_id)
    return titles[0] if titles else None
