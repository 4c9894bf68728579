"""The audit log, for administrators (an org-scoped admin sees their subtree's entries)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from server.access import reach
from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import AUDIT_READ
from server.audit import service
from server.audit.schemas import AuditOut, AuditPage
from server.bounds import IdFilter, Limit, Offset, When
from server.deps import SessionDep
from server.users.models import User

router = APIRouter(tags=["audit"])


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(422, detail=f"{name} needs a time zone, e.g. 2031-03-01T00:00:00Z.")
    return value


@router.get("/audit", response_model=AuditPage)
def list_audit(
    db: SessionDep,
    actor: Annotated[Actor, allow(AUDIT_READ)],
    user_id: IdFilter = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    object_type: Annotated[str | None, Query(max_length=32)] = None,
    object_id: Annotated[str | None, Query(max_length=64)] = None,
    since: When | None = None,
    until: When | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> AuditPage:
    """Who did what, newest first; filter by user, action ('programme.' = family), object, time."""
    if user_id is not None:
        reach.load(db, actor, User, user_id)  # 404 for a user outside the caller's reach
    where = service.AuditFilter(
        user_id=user_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        since=_aware("since", since),
        until=_aware("until", until),
    )
    rows, total = service.list_entries(db, actor=actor, where=where, limit=limit, offset=offset)
    return AuditPage(items=[AuditOut.model_validate(r) for r in rows], total=total)
