"""Programmes, playback items and the versioned schedule document a device receives."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Self

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


class ProgrammeSpec(_Frozen):
    """What to play, when (one-off `start` or `rrule` + local `dtstart`), where, how loud."""

    id: int
    title: str = Field(min_length=1)
    priority: Priority = Priority.NORMAL
    items: tuple[ClipRef, ...] = Field(min_length=1)
    start: UtcDatetime | None = None
    dtstart: datetime | None = None
    rrule: str | None = None
    # A playback is planned only if it starts in [valid_from, valid_until).
    valid_from: UtcDatetime | None = None
    valid_until: UtcDatetime | None = None
    zone_ids: tuple[int, ...] = Field(min_length=1)
    volume: int | None = Field(default=None, ge=0, le=100)
    org_unit_id: int | None = None

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

    @field_validator("zone_ids")
    @classmethod
    def _unique_zones(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _one_kind_of_timing(self) -> ProgrammeSpec:
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
        """Length of one playback: all items back to back."""
        return total_duration(self.items)


class PlaybackItem(_Frozen):
    """One concrete playback of a programme; item_id is stable across recompiles."""

    item_id: str = Field(min_length=1)
    programme_id: int
    start: UtcDatetime
    end: UtcDatetime
    clips: tuple[ClipRef, ...] = Field(min_length=1)
    priority: Priority
    volume: int | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _ends_after_start(self) -> PlaybackItem:
        if self.end <= self.start:
            raise ValueError("end must be later than start")
        return self

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


class ScheduleDocument(_Frozen):
    """A device's compiled schedule over a horizon, with the manifest of clips it needs."""

    device_id: str = Field(min_length=1)
    version: int = Field(ge=1)
    generated_at: UtcDatetime
    horizon_start: UtcDatetime
    horizon_end: UtcDatetime
    items: tuple[PlaybackItem, ...] = ()
    clips: tuple[ClipRef, ...] = ()
    # (items, clips, digest): reused only while these very tuples are in place, so copies
    # made for other devices share it and a model_copy that swaps them recomputes.
    _hash_cache: tuple[object, object, str] | None = PrivateAttr(default=None)

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
        missing = {c.sha256 for item in self.items for c in item.clips} - manifest
        if missing:
            raise ValueError(
                f"clips is missing {len(missing)} clip(s) the items play, e.g. {min(missing)}"
            )
        return self

    def content_hash(self) -> str:
        """sha256 over items and clips only, so an unchanged plan is not republished."""
        private = self.__pydantic_private__
        assert private is not None
        cached = private["_hash_cache"]
        if cached is not None and cached[0] is self.items and cached[1] is self.clips:
            return str(cached[2])
        digest = hashlib.sha256()
        for item in self.items:
            digest.update(item.canonical_json())
            digest.update(b"\n")
        digest.update(b"--\n")
        for clip in self.clips:
            digest.update(clip.model_dump_json().encode())
            digest.update(b"\n")
        private["_hash_cache"] = (self.items, self.clips, digest.hexdigest())
        return digest.hexdigest()
