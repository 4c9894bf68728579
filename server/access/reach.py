"""Loading one object for a caller: 404 when it is missing or outside the caller's reach."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access.actor import Actor, not_found
from server.clips.models import Clip
from server.devices.models import Device
from server.orgs.models import OrgUnit, Zone
from server.programmes.models import Programme
from server.users.models import User


def visible_org_unit(db: Session, actor: Actor, unit_id: int) -> OrgUnit:
    """An org unit inside the caller's subtree."""
    unit = db.get(OrgUnit, unit_id)
    if unit is None or not actor.reaches(unit.id):
        raise not_found("Org unit", unit_id)
    return unit


def visible_zone(db: Session, actor: Actor, zone_id: int) -> Zone:
    """A zone whose org unit is inside the caller's subtree."""
    zone = db.get(Zone, zone_id)
    if zone is None or not actor.reaches(zone.org_unit_id):
        raise not_found("Zone", zone_id)
    return zone


def visible_device(db: Session, actor: Actor, device_id: int) -> Device:
    """A device whose org unit is inside the caller's subtree."""
    device = db.get(Device, device_id)
    if device is None or not actor.reaches(device.org_unit_id):
        raise not_found("Device", device_id)
    return device


def readable_clip(db: Session, actor: Actor, clip_id: int) -> Clip:
    """A clip the caller may play or use: system-wide, own subtree, or shared from above."""
    clip = db.get(Clip, clip_id)
    if clip is None or not actor.reads_clip_of(clip.org_unit_id):
        raise not_found("Clip", clip_id)
    return clip


def writable_clip(db: Session, actor: Actor, clip_id: int) -> Clip:
    """A clip the caller may delete: own subtree (system-wide clips: global admins only)."""
    clip = readable_clip(db, actor, clip_id)
    if not actor.reaches(clip.org_unit_id):
        raise HTTPException(
            403, detail="This clip is shared from a higher org unit; only its owners may delete it."
        )
    return clip


def visible_programme(db: Session, actor: Actor, programme_id: int) -> Programme:
    """A programme owned by an org unit inside the caller's subtree."""
    programme = db.get(Programme, programme_id)
    if programme is None or not actor.reaches(programme.org_unit_id):
        raise not_found("Programme", programme_id)
    return programme


def visible_user(db: Session, actor: Actor, user_id: int) -> User:
    """A user of the caller's subtree (users without an org unit: global callers only)."""
    user = db.get(User, user_id)
    if user is None or not actor.reaches(user.org_unit_id):
        raise not_found("User", user_id)
    return user


def check_zone_ids(db: Session, actor: Actor, zone_ids: Iterable[int]) -> None:
    """422 naming the first zone id that is missing or outside the caller's reach."""
    wanted = sorted(set(zone_ids))
    if not wanted:
        return
    found = dict(db.execute(select(Zone.id, Zone.org_unit_id).where(Zone.id.in_(wanted))).all())
    bad = [z for z in wanted if z not in found or not actor.reaches(found[z])]
    if bad:
        raise HTTPException(422, detail=f"Unknown zone id(s): {', '.join(map(str, bad))}.")


def check_device_ids(db: Session, actor: Actor, device_ids: Iterable[int]) -> None:
    """422 naming the device ids that are missing or outside the caller's reach."""
    wanted = sorted(set(device_ids))
    if not wanted:
        return
    rows = db.execute(select(Device.id, Device.org_unit_id).where(Device.id.in_(wanted))).all()
    found = dict(rows)
    bad = [d for d in wanted if d not in found or not actor.reaches(found[d])]
    if bad:
        raise HTTPException(422, detail=f"Unknown device ids: {bad}.")


def check_clip_ids(db: Session, actor: Actor, clip_ids: Iterable[int]) -> None:
    """422 naming the clip ids the caller may not use (missing or another org unit's)."""
    wanted = sorted(set(clip_ids))
    if not wanted:
        return
    found = dict(db.execute(select(Clip.id, Clip.org_unit_id).where(Clip.id.in_(wanted))).all())
    bad = [c for c in wanted if c not in found or not actor.reads_clip_of(found[c])]
    if bad:
        raise HTTPException(422, detail=f"Unknown clip id(s): {', '.join(map(str, bad))}.")


def check_org_unit(db: Session, actor: Actor, unit_id: int | None, *, status: int = 422) -> None:
    """Refuse an org unit id that is missing or outside the caller's reach, as 'does not exist'."""
    if unit_id is None:
        if not actor.is_global:
            raise HTTPException(status, detail="Choose an org unit inside your own.")
        return
    if db.get(OrgUnit, unit_id) is None or not actor.reaches(unit_id):
        raise HTTPException(status, detail=f"Org unit {unit_id} does not exist.")
