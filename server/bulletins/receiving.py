"""Bulletin use cases on the receiving side: a commune opens, accepts or declines a delivery."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.audit import service as audit
from server.bulletins.models import (
    DECLINED,
    DELIVERED,
    EXPIRED,
    NORMAL,
    PLAYED,
    SCHEDULED,
    SEEN,
    WITHDRAWN,
    Bulletin,
    BulletinDelivery,
)
from server.bulletins.schemas import AcceptBody
from server.bulletins.service import record
from server.bulletins.slots import next_slot_start
from server.domain import DomainError, not_found
from server.events.outbox import emit
from server.events.types import ReplanNeeded
from server.orgs.models import Zone
from server.orgs.tree import ancestor_ids, subtree_ids
from server.programmes import workflow
from server.programmes.conflicts import COMPETING_AT_APPROVAL, refuse_conflicts
from server.programmes.models import APPROVED, Programme
from server.programmes.validation import display_text_of, to_spec

_CLOSED = {
    DECLINED: "was declined there",
    PLAYED: "has already played there",
    EXPIRED: "has expired",
    WITHDRAWN: "was withdrawn by its sender",
}


def received(db: Session, *, actor: Actor, bulletin_id: int) -> list[BulletinDelivery]:
    """The bulletin's deliveries to the caller's units; 404 like a missing bulletin if none."""
    rows = list(
        db.scalars(
            select(BulletinDelivery)
            .where(
                BulletinDelivery.bulletin_id == bulletin_id,
                reach.reachable(actor, BulletinDelivery),
            )
            .order_by(BulletinDelivery.org_unit_id)
        )
    )
    if not rows:
        raise not_found("Bulletin", bulletin_id)
    return rows


def bulletin_of(db: Session, delivery: BulletinDelivery) -> Bulletin:
    """The bulletin of a delivery the caller reaches (the receiver never reaches the sender)."""
    return db.get_one(Bulletin, delivery.bulletin_id)


def _one(db: Session, actor: Actor, bulletin_id: int, org_unit_id: int | None) -> BulletinDelivery:
    """The delivery the caller acts on: the only one it reaches, or the one for org_unit_id."""
    rows = received(db, actor=actor, bulletin_id=bulletin_id)
    if org_unit_id is None:
        if len(rows) > 1:
            units = ", ".join(str(d.org_unit_id) for d in rows)
            raise DomainError(
                422, f"You receive bulletin {bulletin_id} in several org units ({units}); "
                "give org_unit_id.",
            )  # fmt: skip
        return rows[0]
    reach.check_org_unit(db, actor, org_unit_id)
    by_unit = {d.org_unit_id: d for d in rows}
    # A unit inside the receiving commune (a village) names that commune's delivery.
    for unit in ancestor_ids(db, org_unit_id=org_unit_id):
        if unit in by_unit:
            return by_unit[unit]
    raise DomainError(422, f"Bulletin {bulletin_id} was not delivered to org unit {org_unit_id}.")


def _open(delivery: BulletinDelivery, bulletin: Bulletin, now: datetime) -> None:
    """Refuse acting on a delivery that is closed or a bulletin whose validity ended."""
    if delivery.status == SCHEDULED:
        raise DomainError(
            409, f"Bulletin {bulletin.id} is already scheduled there (programme "
            f"{delivery.programme_id}).",
        )  # fmt: skip
    if delivery.status in _CLOSED:
        raise DomainError(409, f"Bulletin {bulletin.id} {_CLOSED[delivery.status]}.")
    if bulletin.valid_until <= now:
        raise DomainError(
            422, f"Bulletin {bulletin.id}'s validity ended at "
            f"{bulletin.valid_until:%Y-%m-%d %H:%M} UTC; it can no longer be broadcast.",
        )  # fmt: skip


def mark_seen(db: Session, *, actor: Actor, bulletin_id: int, now: datetime) -> Bulletin:
    """The caller's units have opened the bulletin: delivered -> seen (others stay as they are)."""
    deliveries = received(db, actor=actor, bulletin_id=bulletin_id)
    bulletin = bulletin_of(db, deliveries[0])
    for delivery in deliveries:
        if delivery.status == DELIVERED:
            delivery.status, delivery.status_at, delivery.seen_at = SEEN, now, now
            record(db, actor, "bulletin.seen", bulletin, org_unit_id=delivery.org_unit_id)
    return bulletin


def _start(db: Session, choice: AcceptBody, delivery: BulletinDelivery, bulletin: Bulletin,
           now: datetime) -> datetime:  # fmt: skip
    if (choice.start is None) == (not choice.next_slot):
        raise DomainError(422, "Say when it plays: start (UTC) or next_slot true, not both.")
    begin = max(now, bulletin.valid_from)
    if choice.start is None:
        found = next_slot_start(
            db, org_unit_id=delivery.org_unit_id, after=begin, until=bulletin.valid_until
        )
        if found is None:
            raise DomainError(
                422, "This commune has no regular slot inside the bulletin's validity; give "
                "a start time.",
            )  # fmt: skip
        return found
    if choice.start.tzinfo is None or choice.start.utcoffset() is None:
        raise DomainError(422, "start needs a time zone, e.g. 2031-03-01T05:00:00+07:00 or …Z.")
    start = choice.start.astimezone(UTC)
    if not begin <= start < bulletin.valid_until:
        raise DomainError(
            422, f"The start time must be inside the bulletin's validity, from "
            f"{begin:%Y-%m-%d %H:%M} to {bulletin.valid_until:%Y-%m-%d %H:%M} UTC.",
        )  # fmt: skip
    return start


def _zones(db: Session, choice: AcceptBody, delivery: BulletinDelivery) -> list[int]:
    if choice.zone_ids:
        return list(choice.zone_ids)
    units = subtree_ids(db, root_id=delivery.org_unit_id)
    zones = list(db.scalars(select(Zone.id).where(Zone.org_unit_id.in_(units)).order_by(Zone.id)))
    if not zones:
        raise DomainError(422, "This commune has no zones to play in; create a zone first.")
    return zones


def accept(
    db: Session,
    *,
    actor: Actor,
    bulletin_id: int,
    choice: AcceptBody,
    now: datetime,
    horizon_days: int,
) -> Bulletin:
    """The commune takes the bulletin: its own programme, approved (accepting is the decision)."""
    delivery = _one(db, actor, bulletin_id, choice.org_unit_id)
    reach.check_ids(db, actor, Zone, choice.zone_ids or [])
    bulletin = bulletin_of(db, delivery)
    _open(delivery, bulletin, now)
    start = _start(db, choice, delivery, bulletin, now)
    audio = [c.clip_id for c in bulletin.clips] or (
        [bulletin.tts_clip_id] if bulletin.tts_clip_id is not None else []
    )
    if not audio:
        raise DomainError(409, f"Bulletin {bulletin.id} has no audio left; ask its sender.")
    fields = {
        "title": bulletin.title,
        "description": f"Bản tin cấp trên số {bulletin.id}. {bulletin.text}"[:2000],
        "display_text": display_text_of(bulletin.text, fallback=bulletin.title),
        "priority": bulletin.level,
        "clip_ids": audio,
        "zone_ids": _zones(db, choice, delivery),
        "start": start,
        "valid_until": bulletin.valid_until,
        "org_unit_id": delivery.org_unit_id,
    }
    programme = workflow.create_programme(
        db, fields=fields, user=actor.user, now=now, approve_now=False,
        horizon_days=horizon_days, may_run_emergency=False,
    )  # fmt: skip
    programme.bulletin_id = bulletin.id
    spec = to_spec(programme)
    assert spec is not None  # create_programme refuses a programme without clips or zones
    refuse_conflicts(
        db, spec=spec, now=now, horizon_days=horizon_days, statuses=COMPETING_AT_APPROVAL
    )
    note = f"accepted from bulletin {bulletin.id}"
    workflow.record(db, programme=programme, to=APPROVED, user_id=actor.user.id, now=now, note=note)
    delivery.status, delivery.status_at = SCHEDULED, now
    delivery.seen_at = delivery.seen_at or now
    delivery.programme_id, delivery.first_start = programme.id, start
    _audit_programme(db, actor, programme, note)
    record(db, actor, "bulletin.accept", bulletin, org_unit_id=delivery.org_unit_id,
           programme_id=programme.id, first_start=start.isoformat())  # fmt: skip
    emit(db, ReplanNeeded(reason=f"programme {programme.id} {note}"))
    db.flush()
    return bulletin


def _audit_programme(db: Session, actor: Actor, programme: Programme, note: str) -> None:
    audit.record(
        db, actor=actor, action="programme.create", object_type="programme",
        object_id=programme.id, org_unit_id=programme.org_unit_id, summary=programme.title,
        details={"status": programme.status, "priority": programme.priority,
                 "zone_ids": sorted(z.id for z in programme.zones), "note": note},
    )  # fmt: skip


def decline(
    db: Session,
    *,
    actor: Actor,
    bulletin_id: int,
    reason: str,
    org_unit_id: int | None,
    now: datetime,
) -> Bulletin:
    """The commune will not broadcast a normal bulletin, and says why."""
    delivery = _one(db, actor, bulletin_id, org_unit_id)
    bulletin = bulletin_of(db, delivery)
    if not reason.strip():
        raise DomainError(422, "Say why you decline the bulletin (reason is empty).")
    if bulletin.level != NORMAL:
        raise DomainError(
            409, f"Bulletin {bulletin.id} is {bulletin.level}: it must be broadcast and "
            "cannot be declined.",
        )  # fmt: skip
    _open(delivery, bulletin, now)
    delivery.status, delivery.status_at = DECLINED, now
    delivery.seen_at = delivery.seen_at or now
    delivery.decline_reason = reason.strip()[:1000]
    record(db, actor, "bulletin.decline", bulletin, org_unit_id=delivery.org_unit_id,
           reason=delivery.decline_reason)  # fmt: skip
    return bulletin
