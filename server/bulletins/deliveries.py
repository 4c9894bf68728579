"""Where a bulletin goes: its targets (ids and administrative codes) and their communes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.access.actor import Actor
from server.bulletins.models import Bulletin, BulletinDelivery
from server.devices.models import Device
from server.domain import DomainError
from server.orgs.models import OrgUnit, Zone
from server.orgs.tree import ancestor_ids, subtree_ids

COMMUNE = "commune"


def resolve_targets(
    db: Session, *, actor: Actor, ids: Iterable[int], codes: Iterable[str]
) -> list[OrgUnit]:
    """The targeted org units; 422 naming every id or code missing or outside the caller's reach."""
    wanted_ids, wanted_codes = sorted(set(ids)), sorted(set(codes))
    if not wanted_ids and not wanted_codes:
        raise DomainError(422, "Choose at least one target: target_org_unit_ids or target_codes.")
    by_id = {u.id: u for u in db.scalars(select(OrgUnit).where(OrgUnit.id.in_(wanted_ids)))}
    by_code = {u.code: u for u in db.scalars(select(OrgUnit).where(OrgUnit.code.in_(wanted_codes)))}
    # A foreign unit and a missing one get the same sentence, so existence never leaks.
    bad = [str(i) for i in wanted_ids if i not in by_id or not actor.reaches(i)]
    bad += [c for c in wanted_codes if c not in by_code or not actor.reaches(by_code[c].id)]
    if bad:
        raise DomainError(422, f"Unknown org unit id(s)/code(s): {', '.join(bad)}.")
    units = {u.id: u for u in [*by_id.values(), *by_code.values()]}
    return [units[k] for k in sorted(units)]


def sender_unit(db: Session, *, actor: Actor, targets: list[OrgUnit]) -> int:
    """The sending unit: the caller's own; for a global admin, the root above the targets."""
    if actor.user.org_unit_id is not None:
        return actor.user.org_unit_id
    roots = {ancestor_ids(db, org_unit_id=t.id)[-1] for t in targets}
    if len(roots) != 1:
        raise DomainError(422, "The targets lie in different trees; send one bulletin per tree.")
    return roots.pop()


def _has_zones(db: Session, unit_ids: set[int]) -> bool:
    return bool(db.scalar(select(func.count(Zone.id)).where(Zone.org_unit_id.in_(unit_ids))))


def receivers(db: Session, *, sender_id: int, targets: Iterable[OrgUnit]) -> list[int]:
    """The units that get a delivery: each target's communes (or the target itself)."""
    inside = subtree_ids(db, root_id=sender_id)
    out: set[int] = set()
    for target in targets:
        if target.kind == COMMUNE:
            out.add(target.id)
            continue
        below = subtree_ids(db, root_id=target.id)
        communes = set(
            db.scalars(select(OrgUnit.id).where(OrgUnit.id.in_(below), OrgUnit.kind == COMMUNE))
        )
        if communes:
            out |= communes
            continue
        # A village (or a market) plays through its commune, when the sender reaches it.
        above = [
            u
            for u in ancestor_ids(db, org_unit_id=target.id)[1:]
            if u in inside and db.scalar(select(OrgUnit.kind).where(OrgUnit.id == u)) == COMMUNE
        ]
        if above:
            out.add(above[0])
        elif _has_zones(db, below):
            out.add(target.id)  # a tree without communes: the unit that holds the zones
    if not out:
        raise DomainError(
            422, "None of the targets has a commune or a zone below it to deliver to."
        )
    return sorted(out)


def clusters_in(db: Session, *, org_unit_id: int) -> int:
    """The devices (clusters) in the unit's subtree."""
    units = subtree_ids(db, root_id=org_unit_id)
    return int(db.scalar(select(func.count(Device.id)).where(Device.org_unit_id.in_(units))) or 0)


def create_deliveries(db: Session, *, bulletin: Bulletin, now: datetime) -> list[BulletinDelivery]:
    """One delivery per receiving unit of the bulletin's targets, status delivered."""
    targets = list(
        db.scalars(select(OrgUnit).where(OrgUnit.id.in_([t.org_unit_id for t in bulletin.targets])))
    )
    deliveries = [
        BulletinDelivery(
            bulletin_id=bulletin.id,
            org_unit_id=unit_id,
            status_at=now,
            created_at=now,
            clusters_targeted=clusters_in(db, org_unit_id=unit_id),
        )
        for unit_id in receivers(db, sender_id=bulletin.org_unit_id, targets=targets)
    ]
    db.add_all(deliveries)
    db.flush()
    return deliveries
