"""The Live screen: speak into the microphone, relay a stream or play a clip as live, now."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.access import policy, reach
from server.access.actor import Actor
from server.clips import service as clips
from server.clips.models import Clip
from server.console.render import page
from server.console.session import ConsoleActor
from server.deps import SessionDep
from server.devices.models import Device
from server.orgs.models import OrgUnit, Zone, zone_devices
from server.relay.models import RelaySource

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class ZoneChoice:
    """A zone the user may broadcast to, with how many working devices it holds."""

    id: int
    name: str
    devices: int


@dataclass(frozen=True)
class UnitZones:
    """The zones of one org unit, as a group of checkboxes."""

    unit_id: int
    unit_name: str
    zones: list[ZoneChoice]


def reachable_zones(db: Session, actor: Actor) -> list[UnitZones]:
    """Zones of the caller's subtree grouped by org unit (by unit name, then zone name)."""
    counts: dict[int, int] = dict(
        db.execute(
            select(zone_devices.c.zone_id, func.count(Device.id))
            .join(Device, Device.id == zone_devices.c.device_id)
            .where(Device.revoked_at.is_(None))
            .group_by(zone_devices.c.zone_id)
        ).all()
    )
    rows = db.execute(
        select(Zone, OrgUnit)
        .join(OrgUnit, OrgUnit.id == Zone.org_unit_id)
        .where(reach.reachable(actor, Zone))
        .order_by(OrgUnit.name, OrgUnit.id, Zone.name, Zone.id)
        .limit(2000)
    ).all()
    groups: dict[int, UnitZones] = {}
    for zone, unit in rows:
        group = groups.setdefault(unit.id, UnitZones(unit.id, unit.name, []))
        group.zones.append(ZoneChoice(zone.id, zone.name, int(counts.get(zone.id, 0))))
    return list(groups.values())


def usable_relay_sources(db: Session, actor: Actor) -> list[tuple[int, str]]:
    """(id, name) of the enabled relay sources of the caller's units and the units above.

    The server still checks each start against the targeted zones' units.
    """
    query = select(RelaySource.id, RelaySource.name).where(
        RelaySource.enabled.is_(True), actor.clip_clause(RelaySource.org_unit_id)
    )
    rows = db.execute(query.order_by(RelaySource.name, RelaySource.id).limit(500)).all()
    return [(int(i), str(n)) for i, n in rows]


@router.get("/live", response_class=HTMLResponse)
def live_page(request: Request, db: SessionDep, actor: ConsoleActor) -> HTMLResponse:
    """Zones to pick, the three sources, priority, the emergency button and the sessions."""
    if not actor.may(policy.LIVE_BROADCAST):
        raise HTTPException(403, detail="")
    groups = reachable_zones(db, actor)
    rows, _total = clips.list_clips(
        db, q=None, topic=None, limit=200, offset=0, visible=reach.reachable(actor, Clip)
    )
    return page(
        request,
        "live.html",
        actor=actor,
        active="live",
        groups=groups,
        zone_names={z.id: z.name for g in groups for z in g.zones},
        device_names=dict(
            db.execute(
                select(Device.uid, Device.name).where(reach.reachable(actor, Device)).limit(5000)
            ).all()
        ),
        clips=rows,
        relay_sources=usable_relay_sources(db, actor),
        may_emergency=actor.may_run_emergency(),
    )
