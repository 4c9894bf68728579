"""Source use cases (register, change, rotate, revoke) and the limits the bulletin core applies."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.audit import service as audit
from server.db import utcnow
from server.domain import DomainError
from server.sources import keys
from server.sources.models import Source
from server.users import accounts
from server.users.models import SERVICE_ROLES, User

LEVEL_RANK = {"normal": 0, "priority": 1, "emergency": 2}
SOURCE_ROLE = "source"


@dataclass(frozen=True)
class SourceLimits:
    """What a source may send: up to max_level; trusted levels skip the editorial approval."""

    source_id: int
    name: str
    max_level: str
    trusted_levels: frozenset[str]


def parse_levels(csv: str) -> frozenset[str]:
    """The stored comma-separated trusted levels as a set."""
    return frozenset(part for part in csv.split(",") if part)


def _levels_csv(levels: frozenset[str]) -> str:
    return ",".join(sorted(levels, key=LEVEL_RANK.__getitem__))


def allows_level(limits: SourceLimits | None, level: str) -> bool:
    """True when the sender may send at this level (None, a person: their role decides)."""
    if level not in LEVEL_RANK:
        return False
    return limits is None or LEVEL_RANK[level] <= LEVEL_RANK[limits.max_level]


def skips_approval(limits: SourceLimits | None, level: str) -> bool:
    """True when a source's bulletin at this level goes out without the editorial approval."""
    return limits is not None and level in limits.trusted_levels


def limits_for(db: Session, *, actor: Actor) -> SourceLimits | None:
    """The caller's source limits; None for a person."""
    if actor.role not in SERVICE_ROLES:
        return None
    source = db.scalar(select(Source).where(Source.user_id == actor.user.id))
    if source is None:  # a service user without its source: it may send nothing
        return SourceLimits(0, actor.user.username, "normal", frozenset())
    return SourceLimits(
        source_id=source.id,
        name=source.name,
        max_level=source.max_level,
        trusted_levels=parse_levels(source.trusted_levels),
    )


def _name(name: str) -> str:
    clean = " ".join(name.split())
    if not clean:
        raise DomainError(422, "Give the source a name (e.g. the department or system it is).")
    return clean


def _check_trusted(max_level: str, trusted: frozenset[str]) -> None:
    above = sorted(
        (t for t in trusted if LEVEL_RANK[t] > LEVEL_RANK[max_level]), key=LEVEL_RANK.__getitem__
    )
    if above:
        raise DomainError(
            422,
            f"Trusted levels must not be above the source's highest level ({max_level}): "
            f"{', '.join(above)}.",
        )


def _audit(db: Session, actor: Actor, action: str, source: Source, **details: Any) -> None:
    """One audit entry about a source: its hint at most, never the key or its hash."""
    audit.record(
        db,
        actor=actor,
        action=action,
        object_type="source",
        object_id=source.id,
        org_unit_id=source.org_unit_id,
        summary=source.name,
        details=details,
    )


def list_sources(db: Session, *, actor: Actor) -> list[Source]:
    """Sources of the caller's subtree, by name."""
    query = select(Source).where(reach.reachable(actor, Source)).order_by(Source.name, Source.id)
    return list(db.scalars(query))


def get(db: Session, *, actor: Actor, source_id: int) -> Source:
    """One source of the caller's subtree."""
    return reach.load(db, actor, Source, source_id)


def create(
    db: Session,
    *,
    actor: Actor,
    name: str,
    org_unit_id: int,
    max_level: str,
    trusted_levels: list[str],
) -> tuple[Source, str]:
    """Register a source in the caller's subtree with its service user; returns (source, key)."""
    clean = _name(name)
    reach.check_org_unit(db, actor, org_unit_id)
    trusted = frozenset(trusted_levels)
    _check_trusted(max_level, trusted)
    # The username needs the source's id: a placeholder first, renamed once the id exists.
    user = accounts.create_service_user(
        db,
        username=f"source-new-{secrets.token_hex(8)}",
        role=SOURCE_ROLE,
        org_unit_id=org_unit_id,
        full_name=clean[:200],
    )
    key = keys.new_key()
    source = Source(
        name=clean,
        org_unit_id=org_unit_id,
        user_id=user.id,
        max_level=max_level,
        trusted_levels=_levels_csv(trusted),
        key_hint=keys.key_hint(key),
        key_hash=keys.key_hash(key),
        created_by=actor.user.id,
    )
    db.add(source)
    db.flush()
    user.username = f"source-{source.id}-{secrets.token_hex(3)}"
    _audit(
        db,
        actor,
        "source.create",
        source,
        max_level=max_level,
        trusted_levels=sorted(trusted),
        key_hint=source.key_hint,
        user_id=user.id,
    )
    return source, key


def update(db: Session, *, actor: Actor, source_id: int, changes: dict[str, Any]) -> Source:
    """Rename a source or change its highest and trusted levels (None values are ignored)."""
    source = reach.load(db, actor, Source, source_id)
    changes = {k: v for k, v in changes.items() if v is not None}
    new: dict[str, Any] = {}
    if "name" in changes:
        new["name"] = _name(changes["name"])
    max_level = changes.get("max_level", source.max_level)
    trusted = (
        frozenset(changes["trusted_levels"])
        if "trusted_levels" in changes
        else parse_levels(source.trusted_levels)
    )
    _check_trusted(max_level, trusted)
    if "max_level" in changes:
        new["max_level"] = max_level
    if "trusted_levels" in changes:
        new["trusted_levels"] = _levels_csv(trusted)
    before = {k: getattr(source, k) for k in new}
    for key, value in new.items():
        setattr(source, key, value)
    _audit(db, actor, "source.update", source, before=before, after=new)
    return source


def rotate(db: Session, *, actor: Actor, source_id: int) -> tuple[Source, str]:
    """Issue a new key; the old one stops working with this commit. Returns (source, key)."""
    source = reach.load(db, actor, Source, source_id)
    if source.revoked_at is not None:
        raise DomainError(
            409, f"Source {source.id} was revoked; register a new source instead of rotating."
        )
    old_hint = source.key_hint
    key = keys.new_key()
    source.key_hash = keys.key_hash(key)
    source.key_hint = keys.key_hint(key)
    source.rotated_at = utcnow()
    _audit(db, actor, "source.rotate", source, old_key_hint=old_hint, key_hint=source.key_hint)
    return source, key


def revoke(db: Session, *, actor: Actor, source_id: int) -> Source:
    """Withdraw a source's key for good: its next request is refused (401)."""
    source = reach.load(db, actor, Source, source_id)
    if source.revoked_at is not None:
        raise DomainError(409, f"Source {source.id} is already revoked.")
    source.revoked_at = utcnow()
    # The service user hangs off the source's org unit, so it is in the caller's reach too.
    user = reach.load(db, actor, User, source.user_id)
    accounts.set_active(db, user=user, active=False)
    _audit(db, actor, "source.revoke", source, key_hint=source.key_hint)
    return source
