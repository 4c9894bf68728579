"""API shapes for programmes, their history and conflicts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schedules import DISPLAY_TEXT_MAX, MAX_RELAY_S, Priority
from schedules.model import DEFAULT_DUCK_DB, DEFAULT_DUCK_RAMP_MS
from server.bounds import Id, RequestBody, Volume, When

MAX_ITEMS = 100
AnnouncementMode = Literal["cut", "duck"]
MODE_DOC = (
    "over a lower item it interrupts: cut (pause it) or duck (keep it playing quieter); "
    "null: duck only when every zone of the programme says duck. Emergencies always cut"
)
DuckDb = Annotated[
    float, Field(ge=-60, le=-3, allow_inf_nan=False, description="the ducked item's level, dB")
]
DuckRampMs = Annotated[int, Field(ge=200, le=500, description="each ramp's length, ms")]
DISPLAY_TEXT_DOC = (
    "what e-boards show while it plays or is next (at most 2000 characters); "
    "empty with TTS items: the TTS text"
)


class ClipItemIn(RequestBody):
    """An existing clip."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["clip"]
    clip_id: Id


class TtsItemIn(RequestBody):
    """Text read by TTS; the programme stores the clip it becomes."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["tts"]
    text: str = Field(min_length=1, max_length=100_000, description="limit: LOA_TTS_MAX_CHARS")
    voice: str = Field(default="vi", min_length=1, max_length=64)


class RelayItemIn(RequestBody):
    """A relay source for a while; the fallback clip plays when its audio does not arrive."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["relay"]
    relay_source_id: Id
    duration_s: float = Field(gt=0, le=MAX_RELAY_S, description="seconds, at most 4 hours")
    fallback_clip_id: Id


ItemIn = Annotated[ClipItemIn | TtsItemIn | RelayItemIn, Field(discriminator="kind")]


class ProgrammeFields(RequestBody):
    """Fields shared by create and check (the check endpoint takes an unsaved programme)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=2000)
    display_text: str = Field(default="", max_length=DISPLAY_TEXT_MAX, description=DISPLAY_TEXT_DOC)
    priority: Priority = Priority.NORMAL
    clip_ids: list[Id] | None = Field(
        default=None, max_length=MAX_ITEMS, description="clips played back to back, in order"
    )
    items: list[ItemIn] | None = Field(
        default=None,
        max_length=MAX_ITEMS,
        description="instead of clip_ids: clips, TTS text and relays, in playing order",
    )
    zone_ids: list[Id] = Field(max_length=1000)
    start: When | None = Field(default=None, description="one-off: UTC start (with zone)")
    rrule: str | None = Field(
        default=None, max_length=500, description="recurring: RFC 5545 RRULE, local time"
    )
    recurrence_preset: str | None = Field(
        default=None,
        max_length=64,
        description="a key of GET /programmes/presets, instead of rrule",
    )
    dtstart: When | None = Field(
        default=None, description="recurring: first occurrence, Asia/Ho_Chi_Minh wall time"
    )
    valid_from: When | None = None
    valid_until: When | None = None
    volume: Volume | None = None
    org_unit_id: Id | None = Field(default=None, description="owner; default: your org unit")
    announcement_mode: AnnouncementMode | None = Field(default=None, description=MODE_DOC)
    duck_db: DuckDb = DEFAULT_DUCK_DB
    duck_ramp_ms: DuckRampMs = DEFAULT_DUCK_RAMP_MS


class ProgrammeCreate(ProgrammeFields):
    """A new programme (a draft, unless an emergency approved at once)."""

    approve_now: bool = Field(
        default=False, description="emergency only: create it already approved"
    )


class ProgrammeUpdate(RequestBody):
    """Changes to a draft or rejected programme; null clears an optional field."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=2000)
    display_text: str | None = Field(
        default=None, max_length=DISPLAY_TEXT_MAX, description=DISPLAY_TEXT_DOC
    )
    priority: Priority | None = None
    clip_ids: list[Id] | None = Field(default=None, max_length=MAX_ITEMS)
    items: list[ItemIn] | None = Field(default=None, max_length=MAX_ITEMS)
    zone_ids: list[Id] | None = Field(default=None, max_length=1000)
    start: When | None = None
    rrule: str | None = Field(default=None, max_length=500)
    recurrence_preset: str | None = Field(default=None, max_length=64)
    dtstart: When | None = None
    valid_from: When | None = None
    valid_until: When | None = None
    volume: Volume | None = None
    org_unit_id: Id | None = None
    announcement_mode: AnnouncementMode | None = Field(default=None, description=MODE_DOC)
    duck_db: DuckDb | None = None
    duck_ramp_ms: DuckRampMs | None = None


class ReasonBody(RequestBody):
    """A reason or note for a status change."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=1000)


class ProgrammeClipOut(BaseModel):
    """A clip in a programme's list."""

    id: int
    title: str
    sha256: str
    duration_s: float


class RelayOut(BaseModel):
    """A relay in a programme's content."""

    relay_source_id: int
    relay_source_name: str
    duration_s: float
    fallback_clip_id: int
    fallback_title: str


class ItemOut(BaseModel):
    """One item of a programme's content, in playing order: a clip or a relay."""

    kind: Literal["clip", "relay"]
    position: int
    clip: ProgrammeClipOut | None = None
    relay: RelayOut | None = None


class TransitionOut(BaseModel):
    """One entry of a programme's history."""

    model_config = ConfigDict(from_attributes=True)

    from_status: str | None
    to_status: str
    user_id: int | None
    at: datetime
    note: str


class ProgrammeOut(BaseModel):
    """A programme as the API shows it."""

    id: int
    title: str
    description: str
    display_text: str = Field(description="what e-boards show while it plays or is next")
    priority: Priority
    status: str
    clip_ids: list[int]
    clips: list[ProgrammeClipOut]
    items: list[ItemOut]
    duration_s: float = Field(description="one playback: clips and relays")
    zone_ids: list[int]
    start: datetime | None
    rrule: str | None
    dtstart: datetime | None
    valid_from: datetime | None
    valid_until: datetime | None
    volume: int | None
    org_unit_id: int
    announcement_mode: AnnouncementMode | None = Field(description=MODE_DOC)
    duck_db: float
    duck_ramp_ms: int
    created_by: int | None
    rejection_reason: str
    created_at: datetime
    updated_at: datetime


class ProgrammeDetail(ProgrammeOut):
    """A programme with its full status history, oldest first."""

    history: list[TransitionOut]


class ProgrammePage(BaseModel):
    """One page of programmes."""

    items: list[ProgrammeOut]
    total: int


class ConflictOut(BaseModel):
    """A same-priority programme that overlaps on a shared zone, first overlap only."""

    other_programme_id: int
    other_title: str
    other_status: str
    priority: Priority
    zone_ids: list[int]
    first_overlap_start: datetime
    first_overlap_end: datetime
    message: str


class ConflictReport(BaseModel):
    """Conflicts found over the planning horizon."""

    window_start: datetime
    window_end: datetime
    conflicts: list[ConflictOut]


class PresetOut(BaseModel):
    """A ready-made recurrence rule."""

    key: str
    rrule: str
    label_vi: str
    label_en: str
