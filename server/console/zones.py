"""Zones named with their org unit: two communes' "Toàn xã" must not look the same."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.orgs.models import OrgUnit, Zone


def unit_names(db: Session, actor: Actor) -> dict[int, str]:
    """Names of the org units the caller's zones hang off."""
    query = (
        select(OrgUnit.id, OrgUnit.name)
        .where(OrgUnit.id.in_(select(Zone.org_unit_id).where(reach.reachable(actor, Zone))))
        .limit(5000)
    )
    return {unit_id: name for unit_id, name in db.execute(query).all()}


def zone_label(zone: Zone, units: dict[int, str]) -> str:
    """ "Toàn xã (Xã Bảo Ninh)"; a zone whose name already says its unit stays as it is."""
    unit = units.get(zone.org_unit_id, "")
    if not unit or unit.casefold() in zone.name.casefold():
        return zone.name
    return f"{zone.name} ({unit})"


def grouped(zones: list[Zone], units: dict[int, str]) -> list[tuple[str, list[Zone]]]:
    """Zones under their org unit's name, units and zones by name (for optgroups and lists)."""
    groups: dict[int, list[Zone]] = {}
    for zone in zones:
        groups.setdefault(zone.org_unit_id, []).append(zone)
    ordered = sorted(groups.items(), key=lambda item: (units.get(item[0], ""), item[0]))
    return [(units.get(uid, ""), sorted(zs, key=lambda z: (z.name, z.id))) for uid, zs in ordered]
