"""Programmes, playback items and the versioned schedule document a device receives."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schedules.priority import Priority
from schedules.recurrence import validate_rrule
from schedules.tz import as_utc, to_local_wall


def _utc(value: datetime) -> datetime:
    return as_utc(value)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
"""An aware datetime, normalised to UTC; naive input is rejected."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClipRef(_Frozen):
    """A content-addressed clip and its length; size is known once the clip is stored."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    duration_s: float = Field(gt=0)
    size_bytes: int | None = Field(default=None, ge=0)

    @field_validator("duration_s")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        return value


def total_duration(clips: tuple[ClipRef, ...]) -> timedelta:
    """How long the clips take played back to back."""
    return timedelta(seconds=sum(clip.duration_s for clip in clips))


MAX_RELAY_S = 4 * 3600.0
DEFAULT_RELAY_DELAY_MS = 2000  # 4G links: frames must arrive before they are heard
DEFAULT_FALLBACK_AFTER_S = 3.0
SESSION_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"  # a topic segment (protocol.topics)


class RelaySpec(_Frozen):
    """A programme's relayed stretch: a relay source for a while, with a fallback clip."""

    # Plays just before the programme's clip at this index (len(items): after the last one);
    # relays with the same index play in list order.
    before_clip: int = Field(ge=0)
    source_id: int = Field(ge=1)
    source_name: str = Field(min_length=1, max_length=200)
    duration_s: float = Field(gt=0, le=MAX_RELAY_S)
    fallback: ClipRef
    playout_delay_ms: int = Field(default=DEFAULT_RELAY_DELAY_MS, ge=100, le=10_000)
    fallback_after_s: float = Field(default=DEFAULT_FALLBACK_AFTER_S, ge=0.5, le=60)


class RelayPart(RelaySpec):
    """A relay in one playback: frames of live session `session_id`, or else the fallback.

    A frame captured (server clock) at c is heard at c + playout_delay_ms, exactly as in a
    live session; so the relay's position p is heard at part start + p, and its audio is the
    frame captured at part start + p - delay. No frames for fallback_after_s: the device plays
    the fallback clip (looped) until frames come again.
    """

    session_id: str = Field(pattern=SESSION_ID_PATTERN)


def relay_session_id(programme_id: int, start: datetime, index: int) -> str:
    """The live session id carrying relay `index` of the playback starting at `start`."""
    return f"r{programme_id}-{as_utc(start):%Y%m%d%H%M%S}-{index}"


class TimelinePart(NamedTuple):
    """One stretch of an item: a clip or a relay, at an offset (s) from the item's start."""

    offset_s: float
    duration_s: float
    clip: ClipRef | None
    relay: RelayPart | None


def _ordered_relays(value: tuple[RelaySpec, ...]) -> tuple[RelaySpec, ...]:
    return tuple(sorted(value, key=lambda r: r.before_clip))  # stable: list order kept


def _check_relays(clips: tuple[ClipRef, ...], relays: tuple[RelaySpec, ...]) -> None:
    if not clips and not relays:
        raise ValueError("give at least one clip (items) or relay")
    for relay in relays:
        if relay.before_clip > len(clips):
            raise ValueError(f"a relay placed before clip {relay.before_clip} of only {len(clips)}")


DISPLAY_TEXT_MAX = 2000  # what an e-board screen can show of one programme's text


AnnounceMode = Literal["cut", "duck"]
DEFAULT_DUCK_DB = -18.0
DEFAULT_DUCK_RAMP_MS = 300


class ProgrammeSpec(_Frozen):
    """What to play, when (one-off `start` or `rrule` + local `dtstart`), where, how loud."""

    id: int
    title: str = Field(min_length=1)
    # The text an e-board shows while this programme plays or is next (the bulletin's or
    # the TTS text, or what an editor wrote for an audio bulletin); "" when there is none.
    display_text: str = Field(default="", max_length=DISPLAY_TEXT_MAX)
    priority: Priority = Priority.NORMAL
    items: tuple[ClipRef, ...] = ()
    relays: tuple[RelaySpec, ...] = ()
    start: UtcDatetime | None = None
    dtstart: datetime | None = None
    rrule: str | None = None
    # A playback is planned only if it starts in [valid_from, valid_until).
    valid_from: UtcDatetime | None = None
    valid_until: UtcDatetime | None = None
    zone_ids: tuple[int, ...] = Field(min_length=1)
    volume: int | None = Field(default=None, ge=0, le=100)
    org_unit_id: int | None = None
    # How this programme's items treat a lower item they interrupt (PlaybackItem.announce).
    announce: AnnounceMode = "cut"
    duck_db: float = Field(default=DEFAULT_DUCK_DB, ge=-60, le=-3)
    duck_ramp_ms: int = Field(default=DEFAULT_DUCK_RAMP_MS, ge=200, le=500)

    @field_validator("dtstart")
    @classmethod
    def _local_wall(cls, value: datetime | None) -> datetime | None:
        # Stored as naive local wall time: the frame recurrence is evaluated in.
        return None if value is None else to_local_wall(value)

    @field_validator("rrule")
    @classmethod
    def _valid_rule(cls, value: str | None, info: ValidationInfo) -> str | None:
        dtstart = info.data.get("dtstart")
        if value is None or dtstart is None:
            return value  # the model check below reports the missing half
        # Normalised form, so equal rules compare and hash equal.
        return validate_rrule(value, dtstart_local=dtstart)

    @field_validator("relays")
    @classmethod
    def _relays_in_order(cls, value: tuple[RelaySpec, ...]) -> tuple[RelaySpec, ...]:
        return _ordered_relays(value)

    @field_validator("zone_ids")
    @classmethod
    def _unique_zones(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _one_kind_of_timing(self) -> ProgrammeSpec:
        _check_relays(self.items, self.relays)
        recurring = self.rrule is not None or self.dtstart is not None
        if self.start is not None and recurring:
            raise ValueError(
                "give either start (one-off) or rrule and dtstart (recurring), not both"
            )
        if self.start is None and not recurring:
            raise ValueError("give start (one-off) or rrule and dtstart (recurring)")
        if recurring and (self.rrule is None or self.dtstart is None):
            raise ValueError("a recurring programme needs both rrule and dtstart")
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and self.valid_until <= self.valid_from
        ):
            raise ValueError("valid_until must be later than valid_from")
        return self

    @property
    def is_recurring(self) -> bool:
        """True for an rrule programme, False for a one-off."""
        return self.rrule is not None

    @property
    def duration(self) -> timedelta:
        """Length of one playback: all clips and relays back to back."""
        relayed = sum(relay.duration_s for relay in self.relays)
        return total_duration(self.items) + timedelta(seconds=relayed)


class PlaybackItem(_Frozen):
    """One concrete playback of a programme; item_id is stable across recompiles."""

    item_id: str = Field(min_length=1)
    programme_id: int
    start: UtcDatetime
    end: UtcDatetime
    clips: tuple[ClipRef, ...] = ()
    priority: Priority
    volume: int | None = Field(default=None, ge=0, le=100)
    # Left out of the JSON when empty, so agents that predate relays read clip-only items.
    relays: tuple[RelayPart, ...] = Field(default=(), exclude_if=lambda value: not value)
    # As an announcement over a lower-priority item (issue 17): "cut" pauses it and resumes
    # it after; "duck" keeps it playing duck_db lower, ramping down over duck_ramp_ms before
    # this item's first sample and back up after its last. Emergency items always cut.
    # Left out of the JSON at their defaults, so documents without ducking are unchanged.
    announce: AnnounceMode = Field(default="cut", exclude_if=lambda value: value == "cut")
    duck_db: float = Field(
        default=DEFAULT_DUCK_DB, ge=-60, le=-3, exclude_if=lambda v: v == DEFAULT_DUCK_DB
    )
    duck_ramp_ms: int = Field(
        default=DEFAULT_DUCK_RAMP_MS, ge=200, le=500, exclude_if=lambda v: v == DEFAULT_DUCK_RAMP_MS
    )

    @field_validator("relays")
    @classmethod
    def _relays_in_order(cls, value: tuple[RelayPart, ...]) -> tuple[RelayPart, ...]:
        return tuple(_ordered_relays(value))  # type: ignore[arg-type]

    @property
    def ducks(self) -> bool:
        """True when this item ducks (not cuts) a lower one it interrupts."""
        return self.announce == "duck" and self.priority is not Priority.EMERGENCY

    @model_validator(mode="after")
    def _ends_after_start(self) -> PlaybackItem:
        if self.end <= self.start:
            raise ValueError("end must be later than start")
        _check_relays(self.clips, self.relays)
        return self

    def parts(self) -> tuple[TimelinePart, ...]:
        """The item's clips and relays in playing order, each with its offset from start."""
        out: list[TimelinePart] = []
        offset = 0.0
        relays = list(self.relays)
        for index in range(len(self.clips) + 1):
            while relays and relays[0].before_clip == index:
                relay = relays.pop(0)
                out.append(TimelinePart(offset, relay.duration_s, None, relay))
                offset += relay.duration_s
            if index < len(self.clips):
                clip = self.clips[index]
                out.append(TimelinePart(offset, clip.duration_s, clip, None))
                offset += clip.duration_s
        return tuple(out)

    def needed_clips(self) -> tuple[ClipRef, ...]:
        """Clips a device must hold for this item: the played ones, then relay fallbacks."""
        return self.clips + tuple(relay.fallback for relay in self.relays)

    # The item's canonical JSON, computed once: the same item appears in thousands of
    # documents whose content hashes the planner compares.
    _canonical: bytes | None = PrivateAttr(default=None)

    @property
    def duration(self) -> timedelta:
        """Planned length of the item (end - start)."""
        return self.end - self.start

    def canonical_json(self) -> bytes:
        """Deterministic JSON of the item, the unit of ScheduleDocument.content_hash."""
        # The private-attribute dict directly: attribute access goes through pydantic's
        # __getattr__, which dominated the planner benchmark.
        private = self.__pydantic_private__
        assert private is not None
        cached: bytes | None = private["_canonical"]
        if cached is None:
            cached = private["_canonical"] = self.model_dump_json().encode()
        return cached

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """Copy the item; an update drops the cached canonical JSON."""
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy._canonical = None
        return copy


def playback_item_id(programme_id: int, start: datetime) -> str:
    """Stable id of a programme's occurrence: '<programme id>@<UTC start>'."""
    return f"{programme_id}@{as_utc(start):%Y%m%dT%H%M%SZ}"


class DisplayText(_Frozen):
    """What an e-board shows for one programme of the document's items."""

    programme_id: int
    title: str = Field(min_length=1, max_length=300)
    text: str = Field(default="", max_length=DISPLAY_TEXT_MAX)


class DisplayInfo(_Frozen):
    """The part of a schedule only devices with a screen receive (an e-board's content)."""

    unit_name: str = Field(min_length=1, max_length=200)  # the commune the board stands in
    texts: tuple[DisplayText, ...] = ()


class ScheduleDocument(_Frozen):
    """A device's compiled schedule over a horizon, with the manifest of clips it needs."""

    device_id: str = Field(min_length=1)
    version: int = Field(ge=1)
    generated_at: UtcDatetime
    horizon_start: UtcDatetime
    horizon_end: UtcDatetime
    items: tuple[PlaybackItem, ...] = ()
    clips: tuple[ClipRef, ...] = ()
    # Sent only to devices whose firmware profile has a screen; left out of the JSON
    # otherwise, so horn-only agents (and those predating e-boards) read the document as before.
    display: DisplayInfo | None = Field(default=None, exclude_if=lambda value: value is None)
    # (items, clips, display, digest): reused only while these very objects are in place, so copies
    # made for other devices share it and a model_copy that swaps them recomputes.
    _hash_cache: tuple[object, object, object, str] | None = PrivateAttr(default=None)

    @field_validator("items")
    @classmethod
    def _sorted_unique_items(cls, items: tuple[PlaybackItem, ...]) -> tuple[PlaybackItem, ...]:
        ordered = tuple(sorted(items, key=lambda item: (item.start, item.item_id)))
        if len({item.item_id for item in ordered}) != len(ordered):
            raise ValueError("item_id values must be unique")
        return ordered

    @model_validator(mode="after")
    def _manifest_covers_items(self) -> ScheduleDocument:
        if self.horizon_end <= self.horizon_start:
            raise ValueError("horizon_end must be later than horizon_start")
        manifest = {clip.sha256 for clip in self.clips}
        if len(manifest) != len(self.clips):
            raise ValueError("clips must list each sha256 once")
        missing = {c.sha256 for item in self.items for c in item.needed_clips()} - manifest
        if missing:
            raise ValueError(
                f"clips is missing {len(missing)} clip(s) the items play, e.g. {min(missing)}"
            )
        if self.display is not None:
            ids = [text.programme_id for text in self.display.texts]
            if len(set(ids)) != len(ids):
                raise ValueError("display.texts must list each programme once")
        return self

    def display_text(self, programme_id: int) -> DisplayText | None:
        """The e-board text of a programme in this document, if the document carries one."""
        if self.display is None:
            return None
        return next((t for t in self.display.texts if t.programme_id == programme_id), None)

    def content_hash(self) -> str:
        """sha256 over items, clips and display only, so an unchanged plan is not republished."""
        private = self.__pydantic_private__
        assert private is not None
        cached = private["_hash_cache"]
        if (
            cached is not None
            and cached[0] is self.items
            and cached[1] is self.clips
            and cached[2] is self.display
        ):
            return str(cached[3])
        digest = hashlib.sha256()
        for item in self.items:
            digest.update(item.canonical_json())
            digest.update(b"\n")
        digest.update(b"--\n")
        for clip in self.clips:
            digest.update(clip.model_dump_json().encode())
            digest.update(b"\n")
        if self.display is not None:  # absent: the digest of a document without a screen
            digest.update(b"--display\n")
            digest.update(self.display.model_dump_json().encode())
        private["_hash_cache"] = (self.items, self.clips, self.display, digest.hexdigest())
        return digest.hexdigest()
