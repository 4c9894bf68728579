"""API shapes for proof of play."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class PlayOut(BaseModel):
    """One reported playback."""

    device_id: int
    device_uid: str
    seq: int
    item_id: str
    programme_id: int | None
    programme_title: str | None
    priority: str
    planned_start: datetime
    actual_start: datetime | None
    ended_at: datetime | None
    outcome: str
    reason: str
    clock_offset_ms: float | None
    clock_error_ms: float | None
    # Relay items only: relayed, fallback or mixed, and the seconds heard of each.
    relay_mode: str | None
    relayed_s: float | None
    fallback_s: float | None
    silent_s: float | None
    received_at: datetime


class PlayPage(BaseModel):
    """One page of plays."""

    items: list[PlayOut]
    total: int
