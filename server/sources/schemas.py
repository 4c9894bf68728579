"""API shapes for outside sources and their keys (a key is shown once, never listed)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from server.bounds import Id, RequestBody

Level = Literal["normal", "priority", "emergency"]
Name = Field(max_length=200, description="e.g. 'Sở Nông nghiệp và Môi trường'")


class SourceCreate(RequestBody):
    """A new source bound to an org unit, with the highest level it may send."""

    model_config = ConfigDict(extra="forbid")

    name: str = Name
    org_unit_id: Id
    max_level: Level = "normal"
    trusted_levels: list[Level] = Field(
        default_factory=list,
        max_length=3,
        description="levels whose bulletins skip the editorial approval (none above max_level)",
    )


class SourceUpdate(RequestBody):
    """Changes to a source (its org unit stays: register a new source instead)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    max_level: Level | None = None
    trusted_levels: list[Level] | None = Field(default=None, max_length=3)


class SourceOut(BaseModel):
    """A source as the API shows it: the key's hint, never the key or its hash."""

    id: int
    name: str
    org_unit_id: int
    user_id: int
    max_level: str
    trusted_levels: list[str]
    key_hint: str
    revoked: bool
    revoked_at: datetime | None
    rotated_at: datetime | None
    last_used_at: datetime | None
    created_by: int | None
    created_at: datetime


class SourceKeyOut(BaseModel):
    """A source with its key: shown in this answer only (Loa keeps just its SHA-256)."""

    source: SourceOut
    key: str = Field(description="send as 'Authorization: Bearer <key>'; shown only once")
