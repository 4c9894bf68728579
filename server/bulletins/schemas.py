"""API shapes for bulletins: what a sender posts (a person, a source key, or a CAP alert)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from server.bounds import Id, RequestBody, When

Level = Literal["normal", "priority", "emergency"]
# An administrative code (mã đơn vị hành chính): digits, e.g. "26734" for a commune.
AdminCode = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z._-]+$")]


class BulletinCreate(RequestBody):
    """A bulletin for the units below the sender: audio (clips) and/or text (read by TTS)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    topic: str = Field(default="", max_length=100)
    level: Level = "normal"
    clip_ids: list[Id] = Field(default_factory=list, max_length=50)
    text: str = Field(
        default="",
        max_length=5000,
        description="for e-boards and the public page; read by TTS when there are no clips",
    )
    essential: bool = Field(default=False, description="thông tin thiết yếu (counted in reports)")
    public: bool = Field(
        default=False,
        description="shown, once approved, on the public page and feed of the communes it reaches",
    )
    valid_from: When | None = Field(default=None, description="UTC; default: now")
    valid_until: When = Field(description="UTC; never played after it")
    repeat_every_min: int | None = Field(
        default=None, ge=5, le=1440, description="emergency: replay this often until valid_until"
    )
    target_org_unit_ids: list[Id] = Field(default_factory=list, max_length=1000)
    target_codes: list[AdminCode] = Field(
        default_factory=list,
        max_length=1000,
        description="administrative codes of org units, instead of or beside their ids",
    )


# -- the sending side's decisions and the commune's answers -------------------------------------


class RejectBody(RequestBody):
    """Why the sending side's board rejects a bulletin."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


class DeclineBody(RequestBody):
    """Why a commune does not broadcast a normal bulletin."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)
    org_unit_id: Id | None = Field(
        default=None, description="the receiving unit, when you reach several deliveries"
    )


class AcceptBody(RequestBody):
    """A commune takes a bulletin into its own schedule: at a time or in its next regular slot."""

    model_config = ConfigDict(extra="forbid")

    start: When | None = Field(default=None, description="UTC start (with zone)")
    next_slot: bool = Field(default=False, description="the commune's next regular slot instead")
    zone_ids: list[Id] | None = Field(
        default=None, max_length=1000, description="default: every zone of the commune"
    )
    org_unit_id: Id | None = Field(
        default=None, description="the receiving unit, when you reach several deliveries"
    )


class DeliveryOut(BaseModel):
    """One receiving unit's delivery and what it did with it."""

    id: int
    org_unit_id: int
    org_unit_name: str
    status: str
    status_at: datetime
    seen_at: datetime | None
    decline_reason: str
    programme_id: int | None
    first_start: datetime | None
    slot_position: int | None
    warning: str
    clusters_targeted: int
    clusters_played: int
    first_played_at: datetime | None
    last_played_at: datetime | None
    overdue: bool = Field(description="priority, not played 10 min after its start or validity")


class BulletinOut(BaseModel):
    """A bulletin as the API shows it."""

    id: int
    title: str
    topic: str
    level: Level
    text: str
    essential: bool
    public: bool
    valid_from: datetime
    valid_until: datetime
    repeat_every_min: int | None
    status: str
    rejection_reason: str
    org_unit_id: int
    org_unit_name: str
    created_by: int | None
    source_id: int | None
    clip_ids: list[int]
    tts_clip_id: int | None
    target_org_unit_ids: list[int]
    approved_by: int | None
    approved_at: datetime | None
    created_at: datetime


class BulletinDetail(BulletinOut):
    """A bulletin with the deliveries the caller may see (the sender: all of them)."""

    deliveries: list[DeliveryOut]
    delivery_counts: dict[str, int]
    overdue: int


class BulletinPage(BaseModel):
    """One page of sent bulletins."""

    items: list[BulletinOut]
    total: int


class InboxItem(BaseModel):
    """A bulletin received by one of the caller's units."""

    bulletin: BulletinOut
    delivery: DeliveryOut


class InboxPage(BaseModel):
    """One page of the inbox, newest first, with the count of deliveries nobody opened yet."""

    items: list[InboxItem]
    total: int
    new: int
