"""Request and response bodies of the live API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from server.bounds import Id, RequestBody, Volume

Priority = Literal["normal", "priority", "emergency"]
RELAY = ("relay", "url")  # the sources that relay a station


class LiveStart(RequestBody):
    """POST /api/v1/live: what to broadcast, where, how urgently."""

    # "relay" (or its older name "url"): a registered relay source, by relay_source_id, or
    # by a url equal to a registered source's; no other address is ever opened.
    source: Literal["mic", "relay", "url", "file"]
    relay_source_id: Id | None = None
    url: Annotated[str, Field(max_length=2000)] | None = None
    clip_id: Id | None = None
    zone_ids: Annotated[list[Id], Field(max_length=1000)] = Field(default_factory=list)
    org_unit_id: Id | None = None
    priority: Priority = "normal"
    # "auto": the server sizes it from the targets' reported link round trips (the session
    # answer says what it chose and why).
    playout_delay_ms: Annotated[int, Field(ge=100, le=5000)] | Literal["auto"] = 500
    duration_s: Annotated[float, Field(gt=0, le=24 * 3600)] | None = None
    idle_timeout_s: Annotated[float, Field(ge=1, le=600)] = 10.0
    volume: Volume | None = None
    label: Annotated[str, Field(max_length=200)] = ""

    @model_validator(mode="after")
    def _consistent(self) -> LiveStart:
        if self.source in RELAY and not self.url and self.relay_source_id is None:
            raise ValueError("a relay needs relay_source_id: one of the registered relay sources")
        if self.source == "file" and self.clip_id is None:
            raise ValueError("a file source needs the clip_id to play")
        if not self.zone_ids and self.org_unit_id is None:
            raise ValueError("choose target zone_ids or an org_unit_id (its whole subtree)")
        return self


class DeviceHealth(BaseModel):
    """One targeted device's answer to the session."""

    uid: str
    zone_id: int
    status: Literal["pending", "joined", "refused", "left"]
    detail: str = ""
    joined_at: float | None = None


class LiveSessionOut(BaseModel):
    """A live session as listed by GET /api/v1/live."""

    id: str
    label: str
    source: str
    priority: Priority
    state: Literal["running", "ended"]
    end_reason: str | None = None
    started_at: float
    ended_at: float | None = None
    playout_delay_ms: int
    playout_delay_basis: str | None = None  # set when the server chose the delay ("auto")
    zone_topics: list[str]
    listeners: int
    targeted: int
    frames_sent: int
    silent_frames: int
    frame_ms: int = 20  # each frame's audio (LOA_LIVE_FRAME_MS; rows stored before it: 20)
    source_status: dict[str, Any]
    cpu_s: float
    devices: list[DeviceHealth]
    ingest_url: str | None = None
