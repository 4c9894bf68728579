"""Relay sources for administrators: the stations live and scheduled relay may use."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import PLAYS_READ, RELAY_SOURCES_MANAGE
from server.bounds import IdPath
from server.deps import SessionDep, now_of
from server.relay import runs, service
from server.relay.models import RelaySource
from server.relay.schemas import (
    RelayRunOut,
    RelayRunPage,
    RelaySourceCreate,
    RelaySourceOut,
    RelaySourceUpdate,
)

router = APIRouter(tags=["relay sources"])
Manager = Annotated[Actor, allow(RELAY_SOURCES_MANAGE)]
Enabled = Annotated[bool | None, Query(description="only enabled (true) or disabled (false)")]
Reader = Annotated[Actor, allow(PLAYS_READ)]
Hours = Annotated[int, Query(ge=1, le=24 * 90, description="runs that ended in the last N hours")]
Limit = Annotated[int, Query(ge=1, le=500)]
AlarmsOnly = Annotated[bool, Query(description="only runs that raised a dead-air alarm")]


def to_out(row: RelaySource) -> RelaySourceOut:
    """RelaySource row → API shape."""
    return RelaySourceOut.model_validate(row, from_attributes=True)


def run_out(view: runs.RunView) -> RelayRunOut:
    """RelayRun with its names → API shape."""
    names = {
        "programme_title": view.programme_title,
        "source_name": view.source_name,
        "alarm_open": view.alarm_open,
    }
    columns = {c: getattr(view.run, c) for c in RelayRunOut.model_fields if c not in names}
    return RelayRunOut.model_validate(columns | names)


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


@router.get("/relay-runs", response_model=RelayRunPage, tags=["relay runs"])
def list_relay_runs(
    request: Request,
    db: SessionDep,
    actor: Reader,
    hours: Hours = 24,
    alarms_only: AlarmsOnly = False,
    limit: Limit = 100,
) -> RelayRunPage:
    """Scheduled relays of your subtree (by the programme's org unit) with their dead-air alarms."""
    since = now_of(request) - timedelta(hours=hours)
    found, total = runs.list_runs(
        db, actor=actor, since=since, alarms_only=alarms_only, limit=limit
    )
    return RelayRunPage(items=[run_out(v) for v in found], total=total)
