"""Programme input checks and the domain view (ProgrammeSpec) of a stored programme."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import (
    DISPLAY_TEXT_MAX,
    PRESETS,
    Priority,
    ProgrammeSpec,
    to_local_wall,
    validate_rrule,
)
from schedules.model import DEFAULT_DUCK_DB, DEFAULT_DUCK_RAMP_MS
from server.clips.models import Clip
from server.domain import DomainError
from server.orgs.models import OrgUnit, Zone
from server.orgs.tree import subtree_ids
from server.programmes import items, lifecycle
from server.programmes.items import RelayTiming
from server.programmes.models import Programme
from server.users.models import User


class ProgrammeError(DomainError):
    """A programme request that cannot be carried out: an HTTP status and a plain reason."""


@dataclass(frozen=True)
class CheckedFields:
    """Programme fields after validation, ready to store."""

    values: dict[str, Any]
    items: list[items.Item]
    zones: list[Zone]
    spec: ProgrammeSpec

    @property
    def clips(self) -> list[Clip]:
        """The clips played, in order (relays left out)."""
        return [item.clip for item in self.items if item.clip is not None]


def display_text_of(text: str, *, fallback: str = "") -> str:
    """An e-board text: `text` (else `fallback`) stripped, cut to DISPLAY_TEXT_MAX with '…'."""
    shown = text.strip() or fallback.strip()
    if len(shown) <= DISPLAY_TEXT_MAX:
        return shown
    return shown[: DISPLAY_TEXT_MAX - 1].rstrip() + "…"


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ProgrammeError(
            422, f"{name} needs a time zone, e.g. 2031-03-01T05:00:00+07:00 or ...T22:00:00Z."
        )
    return value.astimezone(UTC)


def _load_items(db: Session, fields: dict[str, Any], unit: OrgUnit) -> list[items.Item]:
    wanted = items.requested(fields)
    if wanted is None or (not wanted and fields.get("items") is None):
        raise ProgrammeError(422, "Choose at least one clip to play (clip_ids is empty).")
    return items.load(db, items=wanted, org_unit_id=unit.id)


def _load_zones(db: Session, zone_ids: list[int], org_unit: OrgUnit) -> list[Zone]:
    if not zone_ids:
        raise ProgrammeError(422, "Choose at least one zone to play in (zone_ids is empty).")
    zones = list(db.scalars(select(Zone).where(Zone.id.in_(set(zone_ids))).order_by(Zone.id)))
    missing = sorted(set(zone_ids) - {z.id for z in zones})
    if missing:
        raise ProgrammeError(422, f"Unknown zone id(s): {', '.join(map(str, missing))}.")
    allowed = subtree_ids(db, root_id=org_unit.id)
    for zone in zones:
        if zone.org_unit_id not in allowed:
            raise ProgrammeError(
                422,
                f"Zone {zone.id} '{zone.name}' is outside org unit '{org_unit.name}'; a "
                "programme may only target zones of its own org unit or below it.",
            )
    return zones


def _org_unit(db: Session, org_unit_id: int | None, user: User) -> OrgUnit:
    unit_id = org_unit_id if org_unit_id is not None else user.org_unit_id
    if unit_id is None:
        raise ProgrammeError(422, "Give org_unit_id: the org unit that owns the programme.")
    unit = db.get(OrgUnit, unit_id)
    if unit is None:
        raise ProgrammeError(422, f"Org unit {unit_id} does not exist.")
    return unit


def _timing(fields: dict[str, Any], now: datetime) -> dict[str, Any]:
    start = _aware("start", fields.get("start"))
    valid_from = _aware("valid_from", fields.get("valid_from"))
    valid_until = _aware("valid_until", fields.get("valid_until"))
    rrule: str | None = fields.get("rrule")
    preset = fields.get("recurrence_preset")
    if preset is not None:
        if rrule is not None:
            raise ProgrammeError(422, "Give either rrule or recurrence_preset, not both.")
        if preset not in PRESETS:
            raise ProgrammeError(
                422, f"Unknown recurrence preset {preset!r}; choose one of: {', '.join(PRESETS)}."
            )
        rrule = PRESETS[preset].rrule
    dtstart: datetime | None = fields.get("dtstart")
    if dtstart is not None:
        dtstart = to_local_wall(dtstart)
    if start is not None and (rrule is not None or dtstart is not None):
        raise ProgrammeError(
            422, "Give either start (one-off) or rrule and dtstart (recurring), not both."
        )
    if start is None and (rrule is None or dtstart is None):
        raise ProgrammeError(
            422,
            "Say when it plays: start (one-off, UTC) or rrule (or recurrence_preset) and "
            "dtstart (recurring, local time).",
        )
    if rrule is not None and dtstart is not None:
        try:
            rrule = validate_rrule(rrule, dtstart_local=dtstart)
        except ValueError as exc:
            raise ProgrammeError(422, str(exc)) from None
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise ProgrammeError(422, "valid_until must be later than valid_from.")
    if valid_until is not None and valid_until <= now:
        raise ProgrammeError(422, f"valid_until {valid_until:%Y-%m-%d %H:%M} UTC is in the past.")
    if start is not None:
        if start < now:
            raise ProgrammeError(
                422, f"The start time {start:%Y-%m-%d %H:%M:%S} UTC is in the past."
            )
        if (valid_from is not None and start < valid_from) or (
            valid_until is not None and start >= valid_until
        ):
            raise ProgrammeError(422, "The start time is outside valid_from/valid_until.")
    return {
        "start": start,
        "rrule": rrule,
        "dtstart": dtstart,
        "valid_from": valid_from,
        "valid_until": valid_until,
    }


def announce_of(*, priority: Priority, mode: str | None, zones: Iterable[Zone]) -> str:
    """How the programme's items treat a lower item: its own mode, else its zones' consensus.

    Emergencies always cut; with no mode of its own a programme ducks only when every zone
    it plays in says duck (one cutting zone is enough to keep the safer behaviour).
    """
    if priority is Priority.EMERGENCY:
        return "cut"
    if mode is not None:
        return mode
    modes = {zone.announcement_mode for zone in zones}
    return "duck" if modes == {"duck"} else "cut"


def _announce_fields(
    *, priority: Priority, mode: str | None, duck_db: float, ramp_ms: int, zones: list[Zone]
) -> dict[str, Any]:
    announce = announce_of(priority=priority, mode=mode, zones=zones)
    if announce != "duck":
        # Level and ramps mean nothing when cutting: defaults keep the document unchanged.
        return {"announce": "cut"}
    return {"announce": "duck", "duck_db": duck_db, "duck_ramp_ms": ramp_ms}


def _announcement(fields: dict[str, Any]) -> dict[str, Any]:
    mode = fields.get("announcement_mode")
    if mode not in (None, "cut", "duck"):
        raise ProgrammeError(422, "announcement_mode must be cut, duck or null (its zones' mode).")
    duck_db = fields.get("duck_db")
    duck_db = DEFAULT_DUCK_DB if duck_db is None else duck_db
    ramp_ms = fields.get("duck_ramp_ms")
    ramp_ms = DEFAULT_DUCK_RAMP_MS if ramp_ms is None else ramp_ms
    # Stored even while cutting, so checked here and not only by ProgrammeSpec.
    number = isinstance(duck_db, int | float) and not isinstance(duck_db, bool)
    if not number or not -60 <= duck_db <= -3:
        raise ProgrammeError(422, "duck_db must be a level from -60 to -3 dB.")
    if isinstance(ramp_ms, bool) or not isinstance(ramp_ms, int) or not 200 <= ramp_ms <= 500:
        raise ProgrammeError(422, "duck_ramp_ms must be a whole number from 200 to 500 ms.")
    return {"announcement_mode": mode, "duck_db": float(duck_db), "duck_ramp_ms": ramp_ms}


def _make_spec(
    *, programme_id: int, values: dict[str, Any], content: list[items.Item], zones: list[Zone]
) -> ProgrammeSpec:
    clips, relays = items.spec_parts(content, RelayTiming())
    try:
        return ProgrammeSpec(
            id=programme_id,
            title=values["title"],
            display_text=values["display_text"],
            priority=values["priority"],
            items=clips,
            relays=relays,
            start=values["start"],
            dtstart=values["dtstart"],
            rrule=values["rrule"],
            valid_from=values["valid_from"],
            valid_until=values["valid_until"],
            zone_ids=tuple(z.id for z in zones),
            volume=values["volume"],
            org_unit_id=values["org_unit_id"],
            **_announce_fields(
                priority=values["priority"], mode=values["announcement_mode"],
                duck_db=values["duck_db"], ramp_ms=values["duck_ramp_ms"], zones=zones,
            ),
        )  # fmt: skip
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProgrammeError(422, f"{where + ': ' if where else ''}{first['msg']}") from None


def check_fields(
    db: Session, *, fields: dict[str, Any], user: User, now: datetime, programme_id: int = 0
) -> CheckedFields:
    """Validate a full set of programme fields; raise ProgrammeError saying what is wrong."""
    unit = _org_unit(db, fields.get("org_unit_id"), user)
    content = _load_items(db, fields, unit)
    zones = _load_zones(db, list(fields.get("zone_ids") or []), unit)
    values = {
        "title": str(fields["title"]).strip(),
        "description": fields.get("description") or "",
        # Not cut here: an editor's text over the limit is refused (422), not shortened.
        "display_text": str(fields.get("display_text") or "").strip(),
        "priority": Priority(fields.get("priority") or Priority.NORMAL),
        "volume": fields.get("volume"),
        "org_unit_id": unit.id,
        **_announcement(fields),
        **_timing(fields, now),
    }
    if not values["title"]:
        raise ProgrammeError(422, "Give the programme a title.")
    spec = _make_spec(programme_id=programme_id, values=values, content=content, zones=zones)
    if spec.is_recurring and not lifecycle.plays_after(spec, now=now):
        raise ProgrammeError(422, "This recurrence never plays from now on; check its dates.")
    return CheckedFields(values=values, items=content, zones=zones, spec=spec)


def to_spec(programme: Programme, *, timing: RelayTiming | None = None) -> ProgrammeSpec | None:
    """The domain view of a stored programme; None when it has no content or zones left."""
    if not (programme.clips or programme.relays) or not programme.zones:
        return None
    clips, relays = items.stored_parts(programme, timing or RelayTiming())
    priority = Priority(programme.priority)
    announce = _announce_fields(
        priority=priority, mode=programme.announcement_mode, zones=programme.zones,
        # None on a row made outside check_fields and not yet flushed (column defaults).
        duck_db=DEFAULT_DUCK_DB if programme.duck_db is None else programme.duck_db,
        ramp_ms=DEFAULT_DUCK_RAMP_MS if programme.duck_ramp_ms is None else programme.duck_ramp_ms,
    )  # fmt: skip
    return ProgrammeSpec(
        id=programme.id,
        title=programme.title,
        display_text=programme.display_text or "",
        priority=priority,
        items=clips,
        relays=relays,
        start=programme.start,
        dtstart=programme.dtstart,
        rrule=programme.rrule,
        valid_from=programme.valid_from,
        valid_until=programme.valid_until,
        zone_ids=tuple(z.id for z in programme.zones),
        volume=programme.volume,
        org_unit_id=programme.org_unit_id,
        **announce,
    )


def specs_of(
    programmes: Iterable[Programme], *, timing: RelayTiming | None = None
) -> list[ProgrammeSpec]:
    """The specs of the programmes that still have content and zones."""
    return [s for s in (to_spec(p, timing=timing) for p in programmes) if s is not None]
