"""Small builders for schedule tests: clips, programmes and items with readable defaults."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from schedules import ClipRef, PlaybackItem, Priority, ProgrammeSpec, playback_item_id


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """An aware UTC datetime."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def clip(name: str, seconds: float = 60.0) -> ClipRef:
    """A clip whose sha256 is derived from `name`."""
    return ClipRef(sha256=hashlib.sha256(name.encode()).hexdigest(), duration_s=seconds)


def one_off(
    programme_id: int,
    start: datetime,
    *,
    seconds: float = 60.0,
    zones: Sequence[int] = (1,),
    priority: Priority = Priority.NORMAL,
    title: str | None = None,
) -> ProgrammeSpec:
    """A one-off programme of a single clip lasting `seconds`."""
    return ProgrammeSpec(
        id=programme_id,
        title=title or f"One-off {programme_id}",
        priority=priority,
        items=[clip(f"p{programme_id}", seconds)],
        start=start,
        zone_ids=list(zones),
    )


def recurring(
    programme_id: int,
    rrule: str,
    *,
    dtstart: datetime = datetime(2025, 1, 1),
    seconds: float = 60.0,
    zones: Sequence[int] = (1,),
    priority: Priority = Priority.NORMAL,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
) -> ProgrammeSpec:
    """A recurring programme of a single clip lasting `seconds`."""
    return ProgrammeSpec(
        id=programme_id,
        title=f"Recurring {programme_id}",
        priority=priority,
        items=[clip(f"p{programme_id}", seconds)],
        rrule=rrule,
        dtstart=dtstart,
        valid_from=valid_from,
        valid_until=valid_until,
        zone_ids=list(zones),
    )


def item(
    programme_id: int,
    start: datetime,
    *,
    seconds: float = 60.0,
    priority: Priority = Priority.NORMAL,
) -> PlaybackItem:
    """A playback item of one clip, as expansion would produce it."""
    return PlaybackItem(
        item_id=playback_item_id(programme_id, start),
        programme_id=programme_id,
        start=start,
        end=start + timedelta(seconds=seconds),
        clips=[clip(f"p{programme_id}", seconds)],
        priority=priority,
    )
