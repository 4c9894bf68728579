"""API shapes for relay sources."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from server.bounds import Id, RequestBody
from server.relay.models import MAX_URL

Kind = Literal["national", "provincial", "other"]
Url = Field(
    max_length=MAX_URL,
    description="the stream's http(s) URL, e.g. 'https://stream.vov.vn/vov1'",
)


class RelaySourceCreate(RequestBody):
    """A new relay source in an org unit of the caller's subtree."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200, description="e.g. 'VOV1 — Đài Tiếng nói Việt Nam'")
    url: str = Url
    kind: Kind = "other"
    enabled: bool = True
    allow_private: bool = Field(
        default=False,
        description="accept a host on a loopback, private or link-local address (audited)",
    )
    org_unit_id: Id


class RelaySourceUpdate(RequestBody):
    """Changes to a relay source (its org unit stays: register a new one instead)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    url: str | None = Field(default=None, max_length=MAX_URL)
    kind: Kind | None = None
    enabled: bool | None = None
    allow_private: bool | None = None


class RelaySourceOut(BaseModel):
    """A relay source as the API shows it."""

    id: int
    name: str
    url: str
    kind: str
    enabled: bool
    allow_private: bool
    org_unit_id: int
    created_by: int | None
    created_at: datetime
    updated_at: datetime


class RelayRunOut(BaseModel):
    """A scheduled relay the server carried out (or is carrying out), with its alarm."""

    id: int
    session_id: str
    programme_id: int | None
    programme_title: str
    item_id: str
    relay_source_id: int | None
    source_name: str
    org_unit_id: int | None
    planned_start: datetime
    planned_end: datetime
    state: str = Field(description="scheduled, running, dead_air, ended or failed")
    started_at: datetime | None
    ended_at: datetime | None
    frames_sent: int
    dead_air_s: float
    alarm: str = Field(description="the dead-air alarm, in Vietnamese ('' when none)")
    alarm_at: datetime | None
    alarm_cleared_at: datetime | None
    alarm_open: bool


class RelayRunPage(BaseModel):
    """Scheduled relays, newest first."""

    items: list[RelayRunOut]
    total: int
