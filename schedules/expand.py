"""Expand programmes over a window into playback items and compile per-device documents."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from schedules.model import (
    ClipRef,
    DisplayInfo,
    DisplayText,
    PlaybackItem,
    ProgrammeSpec,
    RelayPart,
    ScheduleDocument,
    playback_item_id,
    relay_session_id,
)
from schedules.priority import Priority
from schedules.recurrence import occurrences
from schedules.tz import as_utc


def _planned_starts(
    programme: ProgrammeSpec, window_start: datetime, window_end: datetime
) -> list[datetime]:
    """Starts of the programme's playbacks that overlap [window_start, window_end)."""
    duration = programme.duration
    if programme.rrule is None or programme.dtstart is None:
        start = programme.start
        assert start is not None  # guaranteed by ProgrammeSpec validation
        in_validity = (programme.valid_from is None or start >= programme.valid_from) and (
            programme.valid_until is None or start < programme.valid_until
        )
        overlaps = start < window_end and start + duration > window_start
        return [start] if in_validity and overlaps else []
    # Reach back one duration so a playback already running at window_start is included.
    starts = occurrences(
        rrule=programme.rrule,
        dtstart_local=programme.dtstart,
        window_start=window_start - duration,
        window_end=window_end,
        valid_from=programme.valid_from,
        valid_until=programme.valid_until,
    )
    return [start for start in starts if start + duration > window_start]


def expand_programme(
    programme: ProgrammeSpec, *, window_start: datetime, window_end: datetime
) -> list[PlaybackItem]:
    """Playback items of one programme overlapping the window, sorted by start."""
    low = as_utc(window_start, field="window_start")
    high = as_utc(window_end, field="window_end")
    duration = programme.duration
    return [
        PlaybackItem(
            item_id=playback_item_id(programme.id, start),
            programme_id=programme.id,
            start=start,
            end=start + duration,
            clips=programme.items,
            priority=programme.priority,
            volume=programme.volume,
            relays=_relay_parts(programme, start),
            **_announce(programme),
        )
        for start in _planned_starts(programme, low, high)
    ]


def _announce(programme: ProgrammeSpec) -> dict[str, Any]:
    """The items' announcement fields: emergencies and cutting items carry none (defaults)."""
    if programme.announce != "duck" or programme.priority is Priority.EMERGENCY:
        return {}
    return {
        "announce": "duck",
        "duck_db": programme.duck_db,
        "duck_ramp_ms": programme.duck_ramp_ms,
    }


def _relay_parts(programme: ProgrammeSpec, start: datetime) -> tuple[RelayPart, ...]:
    return tuple(
        RelayPart(
            **relay.model_dump(exclude={"fallback"}),
            fallback=relay.fallback,
            session_id=relay_session_id(programme.id, start, index),
        )
        for index, relay in enumerate(programme.relays)
    )


def _sort_key(item: PlaybackItem) -> tuple[datetime, str]:
    return (item.start, item.item_id)


def expand(
    *, programmes: Sequence[ProgrammeSpec], window_start: datetime, window_end: datetime
) -> list[PlaybackItem]:
    """Every playback of every programme overlapping the window, sorted by start then id."""
    items = [
        item
        for programme in programmes
        for item in expand_programme(programme, window_start=window_start, window_end=window_end)
    ]
    return sorted(items, key=_sort_key)


def clip_manifest(items: Iterable[PlaybackItem]) -> tuple[ClipRef, ...]:
    """Each clip the items play, once, in order of first use."""
    manifest: dict[str, ClipRef] = {}
    for item in items:
        for clip in item.needed_clips():
            manifest.setdefault(clip.sha256, clip)
    return tuple(manifest.values())


class ScheduleCompiler:
    """Expands programmes once per window, then compiles documents per device quickly.

    Items are grouped by zone; a device's items are the union over its zones. Devices
    sharing a zone set (most of them) share one validated document template.
    """

    def __init__(
        self,
        *,
        programmes: Sequence[ProgrammeSpec],
        window_start: datetime,
        window_end: datetime,
    ) -> None:
        self.window_start = as_utc(window_start, field="window_start")
        self.window_end = as_utc(window_end, field="window_end")
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be later than window_start")
        by_zone: defaultdict[int, list[PlaybackItem]] = defaultdict(list)
        for programme in programmes:
            items = expand_programme(
                programme, window_start=self.window_start, window_end=self.window_end
            )
            for zone_id in programme.zone_ids:
                by_zone[zone_id].extend(items)
        self._by_zone = dict(by_zone)
        self._templates: dict[frozenset[int], ScheduleDocument] = {}
        self._texts = {
            p.id: DisplayText(programme_id=p.id, title=p.title[:300], text=p.display_text)
            for p in programmes
        }
        self._with_display: dict[tuple[frozenset[int], str], ScheduleDocument] = {}

    def items_for_zones(self, zone_ids: Iterable[int]) -> tuple[PlaybackItem, ...]:
        """Items for a device in these zones: the union over zones, deduplicated, sorted."""
        unique: dict[str, PlaybackItem] = {}
        for zone_id in set(zone_ids):
            for item in self._by_zone.get(zone_id, ()):
                unique.setdefault(item.item_id, item)
        return tuple(sorted(unique.values(), key=_sort_key))

    def _template(self, zones: frozenset[int], generated_at: datetime) -> ScheduleDocument:
        template = self._templates.get(zones)
        if template is None:
            items = self.items_for_zones(zones)
            template = ScheduleDocument(
                device_id="template",
                version=1,
                generated_at=generated_at,
                horizon_start=self.window_start,
                horizon_end=self.window_end,
                items=items,
                clips=clip_manifest(items),
            )
            template.content_hash()  # computed once here, inherited by every copy
            self._templates[zones] = template
        return template

    def _display_template(
        self, zones: frozenset[int], unit_name: str, generated_at: datetime
    ) -> ScheduleDocument:
        key = (zones, unit_name)
        template = self._with_display.get(key)
        if template is None:
            plain = self._template(zones, generated_at)
            shown = dict.fromkeys(item.programme_id for item in plain.items)
            display = DisplayInfo(
                unit_name=unit_name, texts=tuple(self._texts[pid] for pid in shown)
            )
            template = plain.model_copy(update={"display": display})
            template.content_hash()
            self._with_display[key] = template
        return template

    def compile(
        self,
        *,
        device_id: str,
        zone_ids: Iterable[int],
        version: int,
        generated_at: datetime,
        display_unit: str | None = None,
    ) -> ScheduleDocument:
        """The schedule document of one device in the given zones.

        display_unit: for a device with a screen, the name of the unit it stands in; the
        document then carries the programmes' titles and texts (ScheduleDocument.display).
        """
        if not device_id:
            raise ValueError("device_id must not be empty")
        if version < 1:
            raise ValueError(f"version must be at least 1, got {version}")
        generated = as_utc(generated_at, field="generated_at")
        if display_unit is not None:
            template = self._display_template(frozenset(zone_ids), display_unit, generated)
        else:
            template = self._template(frozenset(zone_ids), generated)
        # The template was validated with the same items and horizon; only the three checked
        # scalars differ, so a copy is safe and avoids re-validating thousands of documents.
        return template.model_copy(
            update={"device_id": device_id, "version": version, "generated_at": generated}
        )


def compile_device_schedule(
    *,
    device_id: str,
    zone_ids: set[int],
    programmes: Sequence[ProgrammeSpec],
    window_start: datetime,
    window_end: datetime,
    version: int,
    generated_at: datetime,
) -> ScheduleDocument:
    """One device's schedule document (for many devices, reuse a ScheduleCompiler)."""
    targeting = [p for p in programmes if not zone_ids.isdisjoint(p.zone_ids)]
    compiler = ScheduleCompiler(
        programmes=targeting, window_start=window_start, window_end=window_end
    )
    return compiler.compile(
        device_id=device_id, zone_ids=zone_ids, version=version, generated_at=generated_at
    )
