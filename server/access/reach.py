"""Reach in one place: every by-id load, id list and list query of an owned object goes here.

An object outside the caller's org units answers exactly like a missing one (404 on a
load, "Unknown … id(s)" in a body), so existence never leaks. Each model names once which
column owns it and whether it is shared down the tree (clips) or kept in the subtree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from server.access.actor import Actor
from server.bulletins.models import Bulletin, BulletinDelivery, RegularSlot
from server.clips.models import Clip
from server.devices.models import Device
from server.domain import DomainError, not_found
from server.feedback.models import FeedbackCase, FeedbackCategory
from server.orgs.models import OrgUnit, Zone
from server.programmes.models import Programme
from server.relay.models import RelaySource
from server.sources.models import Source
from server.users.models import User

T = TypeVar("T")


@dataclass(frozen=True)
class Owned:
    """How one model is owned: its name in answers, its org-unit column, shared downwards."""

    label: str
    owner: InstrumentedAttribute[Any]
    shared_down: bool = False  # clips: readable from below, writable only inside the subtree

    def allows(self, actor: Actor, org_unit_id: int | None) -> bool:
        """True when the caller may see an object owned by this org unit."""
        return actor.reads_clip_of(org_unit_id) if self.shared_down else actor.reaches(org_unit_id)

    def clause(self, actor: Actor) -> ColumnElement[bool]:
        """SQL condition: the caller may see the row."""
        return actor.clip_clause(self.owner) if self.shared_down else actor.org_clause(self.owner)


OWNED: dict[type[Any], Owned] = {
    OrgUnit: Owned("Org unit", OrgUnit.id),
    Zone: Owned("Zone", Zone.org_unit_id),
    Device: Owned("Device", Device.org_unit_id),
    Clip: Owned("Clip", Clip.org_unit_id, shared_down=True),
    Programme: Owned("Programme", Programme.org_unit_id),
    User: Owned("User", User.org_unit_id),
    Source: Owned("Source", Source.org_unit_id),
    # Bulletins: the sending unit's subtree; a delivery: the receiving unit's (and above).
    Bulletin: Owned("Bulletin", Bulletin.org_unit_id),
    BulletinDelivery: Owned("Delivery", BulletinDelivery.org_unit_id),
    RegularSlot: Owned("Regular slot", RegularSlot.org_unit_id),
    # Feedback: the unit handling the case now (a forward moves it); categories: their commune.
    FeedbackCase: Owned("Feedback case", FeedbackCase.org_unit_id),
    FeedbackCategory: Owned("Feedback category", FeedbackCategory.org_unit_id),
    # Relay sources: the unit that registered them (a programme below may use them).
    RelaySource: Owned("Relay source", RelaySource.org_unit_id),
}


def _owned(model: type[Any]) -> Owned:
    try:
        return OWNED[model]
    except KeyError:
        raise TypeError(f"{model.__name__} has no reach rule in server.access.reach") from None


def load(db: Session, actor: Actor, model: type[T], object_id: int) -> T:
    """The object with this id, or 404 "… does not exist" when missing or out of reach."""
    rule = _owned(model)
    row = db.get(model, object_id)
    if row is None or not rule.allows(actor, getattr(row, rule.owner.key)):
        raise not_found(rule.label, object_id)
    return row


def reachable(actor: Actor, model: type[Any]) -> ColumnElement[bool]:
    """The WHERE condition every list query of this model adds."""
    return _owned(model).clause(actor)


def check_ids(db: Session, actor: Actor, model: type[Any], ids: Iterable[int]) -> None:
    """422 naming the ids that are missing or outside the caller's reach."""
    rule = _owned(model)
    wanted = sorted(set(ids))
    if not wanted:
        return
    primary = model.id
    found: dict[int, int | None] = dict(
        db.execute(select(primary, rule.owner).where(primary.in_(wanted))).all()
    )
    bad = [i for i in wanted if i not in found or not rule.allows(actor, found[i])]
    if bad:
        noun = rule.label.lower()
        raise DomainError(422, f"Unknown {noun} id(s): {', '.join(map(str, bad))}.")


def writable_clip(db: Session, actor: Actor, clip_id: int) -> Clip:
    """A clip the caller may delete: own subtree (system-wide clips: global admins only)."""
    clip = load(db, actor, Clip, clip_id)
    if not actor.reaches(clip.org_unit_id):
        raise DomainError(
            403, "This clip is shared from a higher org unit; only its owners may delete it."
        )
    return clip


def check_org_unit(db: Session, actor: Actor, unit_id: int | None, *, status: int = 422) -> None:
    """Refuse an org unit id that is missing or outside the caller's reach, as 'does not exist'."""
    if unit_id is None:
        if not actor.is_global:
            raise DomainError(status, "Choose an org unit inside your own.")
        return
    if db.get(OrgUnit, unit_id) is None or not actor.reaches(unit_id):
        raise DomainError(status, f"Org unit {unit_id} does not exist.")
