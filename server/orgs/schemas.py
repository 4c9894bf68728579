"""API shapes for org units and zones."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from server.bounds import Id, RequestBody

OrgKind = Literal["province", "district", "commune", "village", "other"]
AnnouncementMode = Literal["cut", "duck"]
ZONE_MODE_DOC = (
    "how announcements treat a lower item playing here: cut (pause it) or duck (keep it "
    "playing quieter); a programme's own announcement_mode wins"
)


class OrgUnitCreate(RequestBody):
    """A new node of the administrative tree."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: OrgKind
    parent_id: Id | None = None
    code: str | None = Field(default=None, max_length=32)


class OrgUnitUpdate(RequestBody):
    """Fields of an org unit that may change (parent_id moves it)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: OrgKind | None = None
    parent_id: Id | None = None
    code: str | None = Field(default=None, max_length=32)


class OrgUnitOut(BaseModel):
    """An org unit."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: str
    parent_id: int | None
    code: str | None
    created_at: datetime


class ZoneCreate(RequestBody):
    """A new zone under an org unit."""

    model_config = ConfigDict(extra="forbid")

    org_unit_id: Id
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=1000)
    device_ids: list[Id] = Field(default_factory=list, max_length=10000)
    announcement_mode: AnnouncementMode = Field(default="cut", description=ZONE_MODE_DOC)


class ZoneUpdate(RequestBody):
    """Fields of a zone that may change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    announcement_mode: AnnouncementMode | None = Field(default=None, description=ZONE_MODE_DOC)


class ZoneDevices(RequestBody):
    """The full device membership of a zone."""

    model_config = ConfigDict(extra="forbid")

    device_ids: list[Id] = Field(max_length=10000)


class ZoneOut(BaseModel):
    """A zone with its device ids."""

    id: int
    org_unit_id: int
    name: str
    description: str
    device_ids: list[int]
    announcement_mode: AnnouncementMode = Field(description=ZONE_MODE_DOC)
    created_at: datetime
