"""Relay source use cases: list, register, change, remove; every URL checked before it is kept."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.audit import service as audit
from server.db import utcnow
from server.domain import DomainError
from server.live.urlguard import system_resolve
from server.relay import address
from server.relay.address import CheckedUrl, Resolver, UrlRefused
from server.relay.models import RelaySource

LABEL = "Relay source"


def _load(db: Session, actor: Actor, relay_source_id: int) -> RelaySource:
    """The source, or 404 like a missing one when it is outside the caller's subtree."""
    return reach.load(db, actor, RelaySource, relay_source_id)


def _name(name: str) -> str:
    clean = " ".join(name.split())
    if not clean:
        raise DomainError(422, "Give the relay source a name (e.g. the station it relays).")
    return clean


def _check(url: str, *, allow_private: bool, resolve: Resolver) -> CheckedUrl:
    try:
        return address.check_url(url, allow_private=allow_private, resolve=resolve)
    except UrlRefused as exc:
        raise DomainError(422, str(exc)) from None


def _unique(db: Session, *, org_unit_id: int, name: str, except_id: int | None = None) -> None:
    query = select(RelaySource.id).where(
        RelaySource.org_unit_id == org_unit_id, RelaySource.name == name
    )
    if except_id is not None:
        query = query.where(RelaySource.id != except_id)
    if db.scalar(query.limit(1)) is not None:
        raise DomainError(409, f"This org unit already has a relay source named {name!r}.")


def _refuse_in_use(db: Session, row: RelaySource, doing: str) -> None:
    """409 naming the unfinished programmes that relay the source."""
    # Imported here: programmes build on relay sources, so the module-level arrow points down.
    from server.programmes.items import programmes_using_relay_source, quoted

    users = programmes_using_relay_source(db, relay_source_id=row.id)
    if users:
        noun = "programme" if len(users) == 1 else "programmes"
        raise DomainError(
            409, f"Cannot {doing} the relay source: the {noun} {quoted(users)} relay it; end, "
            "cancel or edit them first.",
        )  # fmt: skip


def _audit(db: Session, actor: Actor, action: str, row: RelaySource, **details: Any) -> None:
    audit.record(
        db,
        actor=actor,
        action=action,
        object_type="relay_source",
        object_id=row.id,
        org_unit_id=row.org_unit_id,
        summary=row.name,
        details=details,
    )


def list_sources(db: Session, *, actor: Actor, enabled: bool | None = None) -> list[RelaySource]:
    """Relay sources of the caller's subtree, by name (only enabled or disabled ones if asked)."""
    query = select(RelaySource).where(reach.reachable(actor, RelaySource))
    if enabled is not None:
        query = query.where(RelaySource.enabled.is_(enabled))
    return list(db.scalars(query.order_by(RelaySource.name, RelaySource.id)))


def get(db: Session, *, actor: Actor, relay_source_id: int) -> RelaySource:
    """One relay source of the caller's subtree."""
    return _load(db, actor, relay_source_id)


def create(
    db: Session,
    *,
    actor: Actor,
    name: str,
    url: str,
    kind: str,
    enabled: bool,
    allow_private: bool,
    org_unit_id: int,
    resolve: Resolver = system_resolve,
) -> RelaySource:
    """Register a relay source after checking where its URL leads."""
    clean = _name(name)
    reach.check_org_unit(db, actor, org_unit_id)
    checked = _check(url, allow_private=allow_private, resolve=resolve)
    _unique(db, org_unit_id=org_unit_id, name=clean)
    row = RelaySource(
        name=clean,
        url=checked.url,
        kind=kind,
        enabled=enabled,
        allow_private=allow_private,
        org_unit_id=org_unit_id,
        created_by=actor.user.id,
    )
    db.add(row)
    db.flush()
    _audit(
        db, actor, "relay_source.create", row, url=row.url, kind=kind, enabled=enabled,
        allow_private=allow_private, addresses=list(checked.addresses),
        private_addresses=list(checked.private),
    )  # fmt: skip
    return row


def update(
    db: Session,
    *,
    actor: Actor,
    relay_source_id: int,
    changes: dict[str, Any],
    resolve: Resolver = system_resolve,
) -> RelaySource:
    """Rename, re-point, re-kind, enable or disable a source (None values are ignored)."""
    row = _load(db, actor, relay_source_id)
    changes = {k: v for k, v in changes.items() if v is not None}
    new: dict[str, Any] = {k: changes[k] for k in ("kind", "enabled") if k in changes}
    if "name" in changes:
        new["name"] = _name(changes["name"])
        _unique(db, org_unit_id=row.org_unit_id, name=new["name"], except_id=row.id)
    details: dict[str, Any] = {}
    if "url" in changes or "allow_private" in changes:
        allow_private = bool(changes.get("allow_private", row.allow_private))
        checked = _check(changes.get("url", row.url), allow_private=allow_private, resolve=resolve)
        new.update(url=checked.url, allow_private=allow_private)
        details.update(addresses=list(checked.addresses), private_addresses=list(checked.private))
    new = {k: v for k, v in new.items() if getattr(row, k) != v}
    if not new:
        return row
    if new.get("enabled") is False:
        _refuse_in_use(db, row, "disable")
    before = {k: getattr(row, k) for k in new}
    for key, value in new.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    _audit(db, actor, "relay_source.update", row, before=before, after=new, **details)
    return row


def delete(db: Session, *, actor: Actor, relay_source_id: int) -> None:
    """Remove a relay source for good (disable it instead to keep it for later)."""
    row = _load(db, actor, relay_source_id)
    _refuse_in_use(db, row, "delete")
    _audit(db, actor, "relay_source.delete", row, url=row.url, kind=row.kind)
    db.delete(row)
