"""E-boards: which devices have a screen, the unit a board names, and what it shows now."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from firmware_profiles import ProfileError, load_profile
from schedules import PlaybackItem, Priority, ScheduleDocument, to_local_wall
from server.devices.models import Device
from server.orgs.models import OrgUnit
from server.programmes.models import Programme

if TYPE_CHECKING:  # a type only: server.planner imports this module
    from server.planner.models import DeviceSchedule

log = logging.getLogger(__name__)
UNIT_NAME_MAX = 200  # schedules.DisplayInfo.unit_name
TODAY_MAX = 200  # a day's list on the page: far more than a commune plays
_PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


@lru_cache(maxsize=256)
def profile_has_display(name: str) -> bool:
    """True when the packaged firmware profile of this name has a screen; unknown: False."""
    # Packaged profiles by name only: a path would have the server read a file of its own.
    if not _PROFILE_NAME.match(name):
        return False
    try:
        return load_profile(name).has_display
    except ProfileError:
        return False


class UnitNames:
    """The name an e-board shows: its unit's nearest commune (itself or above), else its own.

    The tree is read once, on first use: one planning pass asks for many devices.
    """

    def __init__(self, db: Session) -> None:
        self._db = db
        self._units: dict[int, tuple[int | None, str, str]] | None = None
        self._names: dict[int, str] = {}

    def __call__(self, org_unit_id: int) -> str:
        """The board name for a device of this org unit ('' when the unit is gone)."""
        if org_unit_id in self._names:
            return self._names[org_unit_id]
        if self._units is None:
            rows = self._db.execute(
                select(OrgUnit.id, OrgUnit.parent_id, OrgUnit.name, OrgUnit.kind)
            )
            self._units = {uid: (parent, name, kind) for uid, parent, name, kind in rows}
        own = self._units.get(org_unit_id)
        name = own[1] if own is not None else ""
        seen: set[int] = set()
        current: int | None = org_unit_id
        while current is not None and current not in seen and current in self._units:
            seen.add(current)  # a cycle in bad data must not hang the planner
            parent, unit_name, kind = self._units[current]
            if kind == "commune":
                name = unit_name
                break
            current = parent
        name = name.strip()[:UNIT_NAME_MAX].strip()
        self._names[org_unit_id] = name
        return name

    def of_device(self, device: Device) -> str:
        """A device's board name: its unit's (as above), else its own name, else its id."""
        own = device.name.strip()[:UNIT_NAME_MAX].strip()
        return self(device.org_unit_id) or own or device.uid


@dataclass(frozen=True)
class BoardItem:
    """One playback as a board shows it: when, how urgent, title and text."""

    item_id: str
    programme_id: int
    title: str
    text: str
    priority: Priority
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Board:
    """What an e-board shows at `now`, from the newest schedule sent to it."""

    has_display: bool
    now: datetime
    unit_name: str | None = None
    showing: BoardItem | None = None
    next: BoardItem | None = None
    today: tuple[BoardItem, ...] = ()
    emergency: tuple[BoardItem, ...] = ()
    schedule_version: int | None = None
    published_at: datetime | None = None


def _document(row: DeviceSchedule) -> ScheduleDocument | None:
    try:
        return ScheduleDocument.model_validate(row.document)
    except ValidationError:
        # Written by the planner, so valid; an old or hand-edited row shows as no content.
        log.warning("schedule %s of device %s does not parse", row.version, row.device_id)
        return None


def _titles(db: Session, doc: ScheduleDocument) -> dict[int, str]:
    """Programme titles for items whose document carries no display text."""
    missing = {i.programme_id for i in doc.items if doc.display_text(i.programme_id) is None}
    if not missing:
        return {}
    rows = db.execute(select(Programme.id, Programme.title).where(Programme.id.in_(missing)))
    return {pid: title for pid, title in rows}


def _item(doc: ScheduleDocument, item: PlaybackItem, titles: Mapping[int, str]) -> BoardItem:
    shown = doc.display_text(item.programme_id)
    return BoardItem(
        item_id=item.item_id,
        programme_id=item.programme_id,
        title=shown.title if shown is not None else titles.get(item.programme_id, ""),
        text=shown.text if shown is not None else "",
        priority=item.priority,
        start=item.start,
        end=item.end,
    )


def _emergencies(items: Iterable[PlaybackItem], now: datetime) -> list[PlaybackItem]:
    """Per emergency programme in force (from its first playback to the end of its last),
    the playback on now or else the next one."""
    spans: dict[int, list[PlaybackItem]] = {}
    for item in items:
        if item.priority is Priority.EMERGENCY:
            spans.setdefault(item.programme_id, []).append(item)
    out: list[PlaybackItem] = []
    for plays in spans.values():
        if plays[0].start <= now < max(p.end for p in plays):
            out.append(next(p for p in plays if p.end > now))
    return sorted(out, key=lambda p: (p.start, p.item_id))


def board_of(db: Session, *, device: Device, row: DeviceSchedule | None, now: datetime) -> Board:
    """The board of a device at `now` from its newest schedule row (None: nothing sent yet)."""
    has_display = profile_has_display(device.firmware_profile)
    doc = _document(row) if row is not None and has_display else None
    if row is None or doc is None:
        return Board(
            has_display=has_display,
            now=now,
            schedule_version=row.version if row is not None else None,
            published_at=row.published_at if row is not None else None,
        )
    titles = _titles(db, doc)
    items = doc.items  # sorted by start
    on_now = [i for i in items if i.start <= now < i.end]
    # Several at once (an emergency over a normal item): the board shows the most urgent.
    showing = max(on_now, key=lambda i: (i.priority.rank, i.start), default=None)
    upcoming = next((i for i in items if i.start > now), None)
    today = to_local_wall(now).date()
    todays = [i for i in items if to_local_wall(i.start).date() == today][:TODAY_MAX]
    return Board(
        has_display=True,
        now=now,
        unit_name=doc.display.unit_name if doc.display is not None else None,
        showing=_item(doc, showing, titles) if showing is not None else None,
        next=_item(doc, upcoming, titles) if upcoming is not None else None,
        today=tuple(_item(doc, i, titles) for i in todays),
        emergency=tuple(_item(doc, i, titles) for i in _emergencies(items, now)),
        schedule_version=row.version,
        published_at=row.published_at,
    )
