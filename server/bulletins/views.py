"""Read side of bulletins: the sender's list and detail, the commune's inbox (answer shapes)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.bulletins.models import (
    DELIVERED,
    PRIORITY,
    SCHEDULED,
    SEEN,
    Bulletin,
    BulletinDelivery,
)
from server.bulletins.receiving import bulletin_of, received
from server.bulletins.schemas import (
    BulletinDetail,
    BulletinOut,
    BulletinPage,
    DeliveryOut,
    InboxItem,
    InboxPage,
)
from server.domain import DomainError, not_found
from server.orgs.models import OrgUnit
from server.users.models import SERVICE_ROLES

# A priority delivery not played this long after its planned start is flagged to the sender.
OVERDUE_AFTER = timedelta(minutes=10)


def _names(db: Session, ids: Iterable[int]) -> dict[int, str]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = db.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(wanted)))
    return {row[0]: row[1] for row in rows}


def overdue(bulletin: Bulletin, delivery: BulletinDelivery, now: datetime) -> bool:
    """A priority delivery still unplayed 10 min after its start, or after the validity."""
    if bulletin.level != PRIORITY or delivery.status not in (DELIVERED, SEEN, SCHEDULED):
        return False
    late = delivery.first_start is not None and now > delivery.first_start + OVERDUE_AFTER
    return late or now > bulletin.valid_until


def delivery_out(
    bulletin: Bulletin, delivery: BulletinDelivery, name: str, now: datetime
) -> DeliveryOut:
    """Delivery row -> API shape."""
    return DeliveryOut(
        id=delivery.id,
        org_unit_id=delivery.org_unit_id,
        org_unit_name=name,
        status=delivery.status,
        status_at=delivery.status_at,
        seen_at=delivery.seen_at,
        decline_reason=delivery.decline_reason,
        programme_id=delivery.programme_id,
        first_start=delivery.first_start,
        slot_position=delivery.slot_position,
        warning=delivery.warning,
        clusters_targeted=delivery.clusters_targeted,
        clusters_played=delivery.clusters_played,
        first_played_at=delivery.first_played_at,
        last_played_at=delivery.last_played_at,
        overdue=overdue(bulletin, delivery, now),
    )


def bulletin_out(bulletin: Bulletin, name: str, targets: list[int]) -> BulletinOut:
    """Bulletin row -> API shape (targets: those the caller may see)."""
    return BulletinOut(
        id=bulletin.id,
        title=bulletin.title,
        topic=bulletin.topic,
        level=bulletin.level,
        text=bulletin.text,
        essential=bulletin.essential,
        public=bulletin.public,
        valid_from=bulletin.valid_from,
        valid_until=bulletin.valid_until,
        repeat_every_min=bulletin.repeat_every_min,
        status=bulletin.status,
        rejection_reason=bulletin.rejection_reason,
        org_unit_id=bulletin.org_unit_id,
        org_unit_name=name,
        created_by=bulletin.created_by,
        source_id=bulletin.source_id,
        clip_ids=[c.clip_id for c in bulletin.clips],
        tts_clip_id=bulletin.tts_clip_id,
        target_org_unit_ids=targets,
        approved_by=bulletin.approved_by,
        approved_at=bulletin.approved_at,
        created_at=bulletin.created_at,
    )


def _own_only(actor: Actor) -> bool:
    """A source key reads only the bulletins it sent itself."""
    return actor.role in SERVICE_ROLES


def _sent(db: Session, actor: Actor, bulletin_id: int) -> Bulletin | None:
    """The bulletin when the caller is on its sending side (a source: only its own), else None."""
    try:
        bulletin = reach.load(db, actor, Bulletin, bulletin_id)
    except DomainError:
        return None
    if _own_only(actor) and bulletin.created_by != actor.user.id:
        return None
    return bulletin


def detail(db: Session, *, actor: Actor, bulletin_id: int, now: datetime) -> BulletinDetail:
    """The sender sees every delivery; a receiving unit its content and its own delivery."""
    bulletin = _sent(db, actor, bulletin_id)
    if bulletin is not None:
        rows = list(
            db.scalars(
                select(BulletinDelivery)
                .where(BulletinDelivery.bulletin_id == bulletin.id)
                .order_by(BulletinDelivery.org_unit_id)
            )
        )
        targets = [t.org_unit_id for t in bulletin.targets]
    elif _own_only(actor):
        raise not_found("Bulletin", bulletin_id)
    else:
        rows = received(db, actor=actor, bulletin_id=bulletin_id)
        bulletin = bulletin_of(db, rows[0])
        targets = [t.org_unit_id for t in bulletin.targets if actor.reaches(t.org_unit_id)]
    names = _names(db, [bulletin.org_unit_id, *(d.org_unit_id for d in rows)])
    out = [delivery_out(bulletin, d, names.get(d.org_unit_id, ""), now) for d in rows]
    counts: dict[str, int] = {}
    for d in rows:
        counts[d.status] = counts.get(d.status, 0) + 1
    return BulletinDetail(
        **bulletin_out(bulletin, names.get(bulletin.org_unit_id, ""), sorted(targets)).model_dump(),
        deliveries=out,
        delivery_counts=counts,
        overdue=sum(1 for d in out if d.overdue),
    )


def sent(
    db: Session,
    *,
    actor: Actor,
    status: str | None,
    level: str | None,
    limit: int,
    offset: int,
) -> BulletinPage:
    """Bulletins sent by the caller's subtree, newest first."""
    query = select(Bulletin).where(reach.reachable(actor, Bulletin))
    if _own_only(actor):
        query = query.where(Bulletin.created_by == actor.user.id)
    if status is not None:
        query = query.where(Bulletin.status == status)
    if level is not None:
        query = query.where(Bulletin.level == level)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(db.scalars(query.order_by(Bulletin.id.desc()).limit(limit).offset(offset)))
    names = _names(db, (b.org_unit_id for b in rows))
    items = [
        bulletin_out(b, names.get(b.org_unit_id, ""), sorted(t.org_unit_id for t in b.targets))
        for b in rows
    ]
    return BulletinPage(items=items, total=total)


def inbox(
    db: Session, *, actor: Actor, status: str | None, limit: int, offset: int, now: datetime
) -> InboxPage:
    """Deliveries to the caller's units, newest first, with the count of unopened ones."""
    if _own_only(actor):
        return InboxPage(items=[], total=0, new=0)
    query = select(BulletinDelivery).where(reach.reachable(actor, BulletinDelivery))
    new = db.scalar(
        select(func.count()).select_from(
            query.where(BulletinDelivery.status == DELIVERED).subquery()
        )
    )
    if status is not None:
        query = query.where(BulletinDelivery.status == status)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(
        db.scalars(
            query.order_by(BulletinDelivery.created_at.desc(), BulletinDelivery.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )
    bulletins = {
        b.id: b
        for b in db.scalars(select(Bulletin).where(Bulletin.id.in_({d.bulletin_id for d in rows})))
    }
    names = _names(
        db, [*(d.org_unit_id for d in rows), *(b.org_unit_id for b in bulletins.values())]
    )
    items = []
    for d in rows:
        b = bulletins[d.bulletin_id]
        targets = sorted(t.org_unit_id for t in b.targets if actor.reaches(t.org_unit_id))
        items.append(
            InboxItem(
                bulletin=bulletin_out(b, names.get(b.org_unit_id, ""), targets),
                delivery=delivery_out(b, d, names.get(d.org_unit_id, ""), now),
            )
        )
    return InboxPage(items=items, total=total, new=new or 0)
