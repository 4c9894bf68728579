"""Deliveries brought up to date from proof of play: played (clusters played), or expired.

Run by the planner's process about every 30 s, and callable directly (`update_deliveries`).
A delivery's plays are those of every programme its commune made from the bulletin
(`Programme.bulletin_id`), so an emergency split into several rules counts as one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from server.bulletins.models import (
    DELIVERED,
    EXPIRED,
    PLAYED,
    SCHEDULED,
    SEEN,
    Bulletin,
    BulletinDelivery,
)
from server.bulletins.placement import count_clusters
from server.plays.models import PlayRecord
from server.programmes.models import Programme, programme_zones

WAITING = (DELIVERED, SEEN, SCHEDULED)
# Proof of play reaches the server late when a device was offline: keep counting this long
# after the validity ended (an expired delivery whose play shows up becomes played).
LATE_PROOF = timedelta(days=2)
PLAYED_OUTCOME = "played"


def _stats(
    db: Session, keys: set[tuple[int, int]]
) -> dict[tuple[int, int], tuple[int, datetime | None, datetime | None]]:
    """(bulletin, unit) -> (devices that played, first, last actual start)."""
    if not keys:
        return {}
    query = (
        select(
            Programme.bulletin_id,
            Programme.org_unit_id,
            func.count(func.distinct(PlayRecord.device_id)),
            func.min(PlayRecord.actual_start),
            func.max(PlayRecord.actual_start),
        )
        .join(PlayRecord, PlayRecord.programme_id == Programme.id)
        .where(
            tuple_(Programme.bulletin_id, Programme.org_unit_id).in_(sorted(keys)),
            PlayRecord.outcome == PLAYED_OUTCOME,
        )
        .group_by(Programme.bulletin_id, Programme.org_unit_id)
    )
    return {(b, u): (n, first, last) for b, u, n, first, last in db.execute(query) if b}


def _targeted(db: Session, *, bulletin_id: int, org_unit_id: int) -> int:
    """Clusters the unit's programmes of the bulletin reach (when placement did not count)."""
    zones = select(programme_zones.c.zone_id).join(
        Programme, Programme.id == programme_zones.c.programme_id
    )
    zones = zones.where(Programme.bulletin_id == bulletin_id, Programme.org_unit_id == org_unit_id)
    return count_clusters(db, zone_ids=list(db.scalars(zones)))


def update_deliveries(db: Session, *, now: datetime) -> int:
    """Count plays into the open deliveries; mark played or expired; return how many changed."""
    query = (
        select(BulletinDelivery, Bulletin.valid_until)
        .join(Bulletin, Bulletin.id == BulletinDelivery.bulletin_id)
        .where(
            (BulletinDelivery.status.in_(WAITING))
            | (
                BulletinDelivery.status.in_((PLAYED, EXPIRED))
                & (Bulletin.valid_until > now - LATE_PROOF)
            )
        )
        .order_by(BulletinDelivery.id)
    )
    rows: list[tuple[BulletinDelivery, datetime]] = [(d, v) for d, v in db.execute(query)]
    stats = _stats(db, {(d.bulletin_id, d.org_unit_id) for d, _ in rows})
    changed = 0
    for delivery, valid_until in rows:
        before = (
            delivery.status,
            delivery.clusters_played,
            delivery.first_played_at,
            delivery.last_played_at,
            delivery.clusters_targeted,
        )
        played, first, last = stats.get(
            (delivery.bulletin_id, delivery.org_unit_id), (0, None, None)
        )
        if played:
            delivery.clusters_played, delivery.first_played_at = played, first
            delivery.last_played_at = last
            if delivery.clusters_targeted == 0:
                delivery.clusters_targeted = _targeted(
                    db, bulletin_id=delivery.bulletin_id, org_unit_id=delivery.org_unit_id
                )
            if delivery.status != PLAYED:
                delivery.status = PLAYED
        elif delivery.status in WAITING and valid_until <= now:
            delivery.status = EXPIRED
        after = (
            delivery.status,
            delivery.clusters_played,
            delivery.first_played_at,
            delivery.last_played_at,
            delivery.clusters_targeted,
        )
        if after != before:
            if after[0] != before[0]:
                delivery.status_at = now
            changed += 1
    db.flush()
    return changed
