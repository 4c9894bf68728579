"""Relay sources for administrators: the stations live and scheduled relay may use."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import RELAY_SOURCES_MANAGE
from server.bounds import IdPath
from server.deps import SessionDep
from server.relay import service
from server.relay.models import RelaySource
from server.relay.schemas import RelaySourceCreate, RelaySourceOut, RelaySourceUpdate

router = APIRouter(tags=["relay sources"])
Manager = Annotated[Actor, allow(RELAY_SOURCES_MANAGE)]
Enabled = Annotated[bool | None, Query(description="only enabled (true) or disabled (false)")]


def to_out(row: RelaySource) -> RelaySourceOut:
    """RelaySource row → API shape."""
    return RelaySourceOut.model_validate(row, from_attributes=True)


# Plain def routes: FastAPI runs them in its thread pool, so the URL's DNS lookup never
# blocks the event loop.
@router.get("/relay-sources", response_model=list[RelaySourceOut])
def list_relay_sources(
    db: SessionDep, actor: Manager, enabled: Enabled = None
) -> list[RelaySourceOut]:
    """Relay sources of your subtree, by name."""
    return [to_out(r) for r in service.list_sources(db, actor=actor, enabled=enabled)]


@router.post("/relay-sources", response_model=RelaySourceOut, status_code=status.HTTP_201_CREATED)
def create_relay_source(db: SessionDep, actor: Manager, body: RelaySourceCreate) -> RelaySourceOut:
    """Register a relay source; a host on a non-public address needs allow_private."""
    return to_out(service.create(db, actor=actor, **body.model_dump()))


@router.get("/relay-sources/{relay_source_id:int}", response_model=RelaySourceOut)
def get_relay_source(db: SessionDep, actor: Manager, relay_source_id: IdPath) -> RelaySourceOut:
    """One relay source of your subtree."""
    return to_out(service.get(db, actor=actor, relay_source_id=relay_source_id))


@router.patch("/relay-sources/{relay_source_id:int}", response_model=RelaySourceOut)
def update_relay_source(
    db: SessionDep, actor: Manager, relay_source_id: IdPath, body: RelaySourceUpdate
) -> RelaySourceOut:
    """Rename, re-point, enable or disable a relay source."""
    changes = body.model_dump(exclude_unset=True)
    row = service.update(db, actor=actor, relay_source_id=relay_source_id, changes=changes)
    return to_out(row)


@router.delete("/relay-sources/{relay_source_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_relay_source(db: SessionDep, actor: Manager, relay_source_id: IdPath) -> None:
    """Remove a relay source for good (PATCH enabled=false keeps it)."""
    service.delete(db, actor=actor, relay_source_id=relay_source_id)
