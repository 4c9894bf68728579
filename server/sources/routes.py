"""Outside sources for administrators: register, list, change, rotate and revoke their keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import SOURCES_MANAGE
from server.bounds import IdPath
from server.deps import SessionDep
from server.sources import service
from server.sources.models import Source
from server.sources.schemas import SourceCreate, SourceKeyOut, SourceOut, SourceUpdate

router = APIRouter(tags=["sources"])
Manager = Annotated[Actor, allow(SOURCES_MANAGE)]


def to_out(source: Source) -> SourceOut:
    """Source row → API shape (the key's hint, never its hash)."""
    return SourceOut(
        id=source.id,
        name=source.name,
        org_unit_id=source.org_unit_id,
        user_id=source.user_id,
        max_level=source.max_level,
        trusted_levels=sorted(
            service.parse_levels(source.trusted_levels), key=service.LEVEL_RANK.__getitem__
        ),
        key_hint=source.key_hint,
        revoked=source.revoked_at is not None,
        revoked_at=source.revoked_at,
        rotated_at=source.rotated_at,
        last_used_at=source.last_used_at,
        created_by=source.created_by,
        created_at=source.created_at,
    )


@router.post("/sources", response_model=SourceKeyOut, status_code=status.HTTP_201_CREATED)
def create_source(db: SessionDep, actor: Manager, body: SourceCreate) -> SourceKeyOut:
    """Register a source; its API key is in this answer only (stored hashed)."""
    source, key = service.create(db, actor=actor, **body.model_dump())
    return SourceKeyOut(source=to_out(source), key=key)


@router.get("/sources", response_model=list[SourceOut])
def list_sources(db: SessionDep, actor: Manager) -> list[SourceOut]:
    """Sources of your subtree (keys are never shown again)."""
    return [to_out(s) for s in service.list_sources(db, actor=actor)]


@router.get("/sources/{source_id:int}", response_model=SourceOut)
def get_source(db: SessionDep, actor: Manager, source_id: IdPath) -> SourceOut:
    """One source of your subtree."""
    return to_out(service.get(db, actor=actor, source_id=source_id))


@router.patch("/sources/{source_id:int}", response_model=SourceOut)
def update_source(
    db: SessionDep, actor: Manager, source_id: IdPath, body: SourceUpdate
) -> SourceOut:
    """Rename a source or change its highest and trusted levels."""
    changes = body.model_dump(exclude_unset=True)
    return to_out(service.update(db, actor=actor, source_id=source_id, changes=changes))


@router.post("/sources/{source_id:int}/rotate", response_model=SourceKeyOut)
def rotate_source_key(db: SessionDep, actor: Manager, source_id: IdPath) -> SourceKeyOut:
    """Issue a new key (shown once); the old one stops working at once."""
    source, key = service.rotate(db, actor=actor, source_id=source_id)
    return SourceKeyOut(source=to_out(source), key=key)


@router.post("/sources/{source_id:int}/revoke", response_model=SourceOut)
def revoke_source(db: SessionDep, actor: Manager, source_id: IdPath) -> SourceOut:
    """Withdraw a source's key for good: its next request is refused."""
    return to_out(service.revoke(db, actor=actor, source_id=source_id))
