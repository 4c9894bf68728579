"""Bulletin use cases on the sending side: send, approve, reject, cancel.

The commune side (seen, accept, decline) is in server/bulletins/receiving.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.access.policy import BULLETINS_APPROVE
from server.audit import service as audit
from server.bulletins import deliveries, placement, speech
from server.bulletins.models import (
    APPROVED,
    CANCELLED,
    DELIVERY_FINAL,
    EMERGENCY,
    REJECTED,
    SUBMITTED,
    WITHDRAWN,
    Bulletin,
    BulletinClip,
    BulletinDelivery,
    BulletinTarget,
)
from server.bulletins.schemas import BulletinCreate
from server.clips.models import Clip
from server.domain import DomainError
from server.events.outbox import emit
from server.events.types import ReplanNeeded
from server.programmes import workflow
from server.programmes.models import FINISHED, Programme
from server.settings import ServerSettings
from server.sources.service import allows_level, limits_for, skips_approval


def record(db: Session, actor: Actor, action: str, bulletin: Bulletin, **details: Any) -> None:
    """Audit one change of a bulletin (on the sending unit, or on the unit named in details)."""
    unit = details.pop("org_unit_id", bulletin.org_unit_id)
    audit.record(
        db,
        actor=actor,
        action=action,
        object_type="bulletin",
        object_id=bulletin.id,
        org_unit_id=unit,
        summary=bulletin.title,
        details={"status": bulletin.status, "level": bulletin.level, **details},
    )


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise DomainError(422, f"{name} needs a time zone, e.g. 2031-03-01T05:00:00+07:00 or …Z.")
    return value.astimezone(UTC)


def _validity(fields: BulletinCreate, now: datetime) -> tuple[datetime, datetime]:
    until = _aware("valid_until", fields.valid_until)
    start = _aware("valid_from", fields.valid_from) if fields.valid_from is not None else now
    if until <= now:
        raise DomainError(422, f"valid_until {until:%Y-%m-%d %H:%M} UTC has already passed.")
    if until <= start:
        raise DomainError(422, "valid_until must be later than valid_from.")
    return start, until


def _approved_at_once(db: Session, actor: Actor, level: str) -> tuple[bool, int | None]:
    """(skips the editorial approval, source id): a trusted source level, or an emergency."""
    limits = limits_for(db, actor=actor)
    if limits is None:  # a person: an emergency from someone who may run one must not wait
        return level == EMERGENCY and actor.may_run_emergency(), None
    if not limits.source_id:
        raise DomainError(403, "This key belongs to no registered source; it may send nothing.")
    if not allows_level(limits, level):
        raise DomainError(403, f"This source may send bulletins up to {limits.max_level}.")
    return skips_approval(limits, level), limits.source_id


def _deliver(db: Session, actor: Actor, bulletin: Bulletin, now: datetime) -> None:
    """Approve: one delivery per receiving unit, then placement (priority, emergency)."""
    bulletin.status = APPROVED
    bulletin.approved_by = actor.user.id
    bulletin.approved_at = bulletin.updated_at = now
    made = deliveries.create_deliveries(db, bulletin=bulletin, now=now)
    placement.place(db, bulletin=bulletin, deliveries=made, now=now)
    record(db, actor, "bulletin.approve", bulletin, receivers=[d.org_unit_id for d in made])


def create(
    db: Session,
    *,
    actor: Actor,
    fields: BulletinCreate,
    now: datetime,
    settings: ServerSettings | None = None,
) -> Bulletin:
    """Send a bulletin down the tree: submitted, or approved and delivered at once.

    `settings` is needed for a text-only bulletin (its audio is made by TTS here).
    """
    targets = deliveries.resolve_targets(
        db, actor=actor, ids=fields.target_org_unit_ids, codes=fields.target_codes
    )
    reach.check_ids(db, actor, Clip, fields.clip_ids)
    title, text = fields.title.strip(), fields.text.strip()
    if not title:
        raise DomainError(422, "Give the bulletin a title.")
    if not fields.clip_ids and not text:
        raise DomainError(422, "Give the bulletin audio (clip_ids) or a text to read out.")
    if fields.repeat_every_min is not None and fields.level != EMERGENCY:
        raise DomainError(422, "repeat_every_min is for emergency bulletins only.")
    valid_from, valid_until = _validity(fields, now)
    sender = deliveries.sender_unit(db, actor=actor, targets=targets)
    deliveries.receivers(db, sender_id=sender, targets=targets)  # 422 when nobody would get it
    at_once, source_id = _approved_at_once(db, actor, fields.level)
    bulletin = Bulletin(
        title=title,
        topic=fields.topic.strip(),
        level=fields.level,
        text=text,
        essential=fields.essential,
        public=fields.public,
        valid_from=valid_from,
        valid_until=valid_until,
        repeat_every_min=fields.repeat_every_min,
        status=SUBMITTED,
        org_unit_id=sender,
        created_by=actor.user.id,
        source_id=source_id,
        created_at=now,
        updated_at=now,
    )
    bulletin.clips = [BulletinClip(position=i, clip_id=c) for i, c in enumerate(fields.clip_ids)]
    bulletin.targets = [BulletinTarget(org_unit_id=t.id) for t in targets]
    db.add(bulletin)
    db.flush()
    if not bulletin.clips:
        bulletin.tts_clip_id = speech.tts_clip(
            db, actor=actor, bulletin=bulletin, settings=settings
        ).id
    record(db, actor, "bulletin.create", bulletin, targets=[t.id for t in targets])
    if at_once:
        _deliver(db, actor, bulletin, now)
    db.flush()
    return bulletin


def _submitted(bulletin: Bulletin, verb: str) -> None:
    if bulletin.status != SUBMITTED:
        raise DomainError(
            409,
            f"Bulletin {bulletin.id} is {bulletin.status}; only a submitted bulletin can be "
            f"{verb}.",
        )


def approve(
    db: Session,
    *,
    actor: Actor,
    bulletin_id: int,
    now: datetime,
    settings: ServerSettings | None = None,
) -> Bulletin:
    """The sending side's board approves: the bulletin is delivered to every targeted commune."""
    bulletin = reach.load(db, actor, Bulletin, bulletin_id)
    _submitted(bulletin, "approved")
    if bulletin.valid_until <= now:
        raise DomainError(
            409,
            f"Bulletin {bulletin.id}'s validity ended at {bulletin.valid_until:%Y-%m-%d %H:%M} "
            "UTC; it can no longer be delivered.",
        )
    if not bulletin.clips and bulletin.tts_clip_id is None:  # its TTS clip was deleted
        bulletin.tts_clip_id = speech.tts_clip(
            db, actor=actor, bulletin=bulletin, settings=settings
        ).id
    _deliver(db, actor, bulletin, now)
    db.flush()
    return bulletin


def reject(db: Session, *, actor: Actor, bulletin_id: int, reason: str, now: datetime) -> Bulletin:
    """Send a submitted bulletin back with the reason; nothing is delivered."""
    bulletin = reach.load(db, actor, Bulletin, bulletin_id)
    if not reason.strip():
        raise DomainError(422, "Say why the bulletin is rejected (reason is empty).")
    _submitted(bulletin, "rejected")
    bulletin.status = REJECTED
    bulletin.rejection_reason = reason.strip()[:1000]
    bulletin.updated_at = now
    record(db, actor, "bulletin.reject", bulletin, reason=bulletin.rejection_reason)
    return bulletin


def cancel(db: Session, *, actor: Actor, bulletin_id: int, now: datetime) -> Bulletin:
    """Withdraw a bulletin: open deliveries withdrawn, programmes made from it cancelled."""
    bulletin = reach.load(db, actor, Bulletin, bulletin_id)
    if bulletin.status not in (SUBMITTED, APPROVED):
        raise DomainError(409, f"Bulletin {bulletin.id} is already {bulletin.status}.")
    if (
        bulletin.status == APPROVED
        and not actor.may(BULLETINS_APPROVE)
        and bulletin.created_by != actor.user.id
    ):
        raise DomainError(
            403, "This bulletin is approved and delivered; only its sender or an approver "
            "may withdraw it.",
        )  # fmt: skip
    bulletin.status = CANCELLED
    bulletin.updated_at = now
    open_deliveries = db.scalars(
        select(BulletinDelivery).where(
            BulletinDelivery.bulletin_id == bulletin.id,
            BulletinDelivery.status.not_in(DELIVERY_FINAL),
        )
    )
    withdrawn = []
    for delivery in open_deliveries:
        delivery.status, delivery.status_at = WITHDRAWN, now
        withdrawn.append(delivery.org_unit_id)
    programmes = list(
        db.scalars(
            select(Programme).where(
                Programme.bulletin_id == bulletin.id, Programme.status.not_in(FINISHED)
            )
        )
    )
    note = f"bulletin {bulletin.id} withdrawn by its sender"
    for programme in programmes:
        workflow.cancel(db, programme=programme, user=actor.user, now=now, note=note)
        audit.record(
            db, actor=actor, action="programme.cancel", object_type="programme",
            object_id=programme.id, org_unit_id=programme.org_unit_id, summary=programme.title,
            details={"status": programme.status, "note": note},
        )  # fmt: skip
    record(db, actor, "bulletin.cancel", bulletin, withdrawn=withdrawn)
    if programmes:
        emit(db, ReplanNeeded(reason=f"bulletin {bulletin.id} cancelled"))
    db.flush()
    return bulletin
