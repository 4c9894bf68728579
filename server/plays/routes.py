"""Proof of play: what devices report they played."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException

from server.access import reach
from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import PLAYS_READ
from server.bounds import IdFilter, Limit, Offset, When
from server.deps import SessionDep
from server.devices.models import Device
from server.orgs.models import Zone
from server.plays import service
from server.plays.schemas import PlayOut, PlayPage

router = APIRouter(tags=["proof of play"])


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(422, detail=f"{name} needs a time zone, e.g. 2031-03-01T00:00:00Z.")
    return value


@router.get("/plays", response_model=PlayPage)
def list_plays(
    db: SessionDep,
    actor: Annotated[Actor, allow(PLAYS_READ)],
    device_id: IdFilter = None,
    zone_id: IdFilter = None,
    since: When | None = None,
    until: When | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> PlayPage:
    """Plays of your devices by device, zone (current members) and planned start [since, until)."""
    if device_id is not None:
        reach.load(db, actor, Device, device_id)
    if zone_id is not None:
        reach.load(db, actor, Zone, zone_id)
    where = service.PlayFilter(
        device_id=device_id,
        zone_id=zone_id,
        since=_aware("since", since),
        until=_aware("until", until),
    )
    rows, total = service.list_plays(db, actor=actor, where=where, limit=limit, offset=offset)
    items = [
        PlayOut(
            device_id=r.device_id,
            device_uid=uid,
            seq=r.seq,
            item_id=r.item_id,
            programme_id=r.programme_id,
            programme_title=title,
            priority=r.priority,
            planned_start=r.planned_start,
            actual_start=r.actual_start,
            ended_at=r.ended_at,
            outcome=r.outcome,
            reason=r.reason,
            clock_offset_ms=r.clock_offset_ms,
            clock_error_ms=r.clock_error_ms,
            relay_mode=r.relay_mode,
            relayed_s=r.relayed_s,
            fallback_s=r.fallback_s,
            silent_s=r.silent_s,
            received_at=r.received_at,
        )
        for r, uid, title in rows
    ]
    return PlayPage(items=items, total=total)
