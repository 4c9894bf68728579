"""Writing and reading the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.audit.models import AuditEntry
from server.db import utcnow

# An entry belongs to the org unit of the object it is about; entries without one (sign-ins
# of global users, system changes) are for global administrators only.
REACH = reach.Owned("Audit entry", AuditEntry.org_unit_id)


def record(
    db: Session,
    *,
    actor: Actor | None,
    action: str,
    object_type: str,
    object_id: object = None,
    org_unit_id: int | None = None,
    summary: str = "",
    details: dict[str, Any] | None = None,
    ip: str | None = None,
    username: str | None = None,
    user_id: int | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Add an entry to the caller's session: it commits (or rolls back) with the change."""
    name = username if username is not None else (actor.user.username if actor else "")
    address = ip if ip is not None else (actor.ip if actor else "")
    entry = AuditEntry(
        at=at or utcnow(),
        user_id=actor.user.id if actor else user_id,
        username=name[:64],
        ip=address[:64],
        action=action[:64],
        object_type=object_type[:32],
        object_id=None if object_id is None else str(object_id)[:64],
        org_unit_id=org_unit_id,
        summary=summary[:500],
        details=_jsonable(details or {}),
    )
    db.add(entry)
    return entry


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to list."""

    user_id: int | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_entries(
    db: Session, *, actor: Actor, where: AuditFilter, limit: int, offset: int
) -> tuple[list[AuditEntry], int]:
    """Entries in the actor's reach, newest first."""
    query = select(AuditEntry).where(REACH.clause(actor))
    if where.user_id is not None:
        query = query.where(AuditEntry.user_id == where.user_id)
    if where.action:
        # "programme." matches every programme action; a full name matches exactly.
        if where.action.endswith("."):
            query = query.where(AuditEntry.action.startswith(where.action))
        else:
            query = query.where(AuditEntry.action == where.action)
    if where.object_type:
        query = query.where(AuditEntry.object_type == where.object_type)
    if where.object_id:
        query = query.where(AuditEntry.object_id == where.object_id)
    if where.since is not None:
        query = query.where(AuditEntry.at >= where.since)
    if where.until is not None:
        query = query.where(AuditEntry.at < where.until)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(
        query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit).offset(offset)
    )
    return list(rows), total
