"""API shapes of the acoustic self-test, device events and the units' daily self-test time."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from server.bounds import RequestBody, Volume

EventKind = Literal["selftest", "silence", "power"]
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class SelfTestCreate(RequestBody):
    """Run the self-test now: at this volume (empty: the scheduled one), or as the new baseline."""

    model_config = ConfigDict(extra="forbid")

    volume: Volume | None = Field(default=None, description="0-100; null: the unit's volume")
    rebaseline: bool = Field(default=False, description="this run becomes the new baseline")


class ScheduleUpdate(RequestBody):
    """A unit's daily self-test: local time HH:MM (not 22:00-05:00), or null for none."""

    model_config = ConfigDict(extra="forbid")

    daily_at: str | None = Field(description='local time "HH:MM", 05:00-21:59; null: none')
    volume: Volume = Field(default=30, description="the volume the test plays at, 0-100")

    @field_validator("daily_at")
    @classmethod
    def _clock_time(cls, value: str | None) -> str | None:
        if value is not None and not _HHMM.match(value):
            raise ValueError('give a time of day as "HH:MM", e.g. "11:30"')
        return value


class ScheduleOut(BaseModel):
    """The unit's self-test setting and the devices that were sent a new desired state."""

    org_unit_id: int
    daily_at: str | None
    volume: int
    devices_updated: list[int]


class RunOut(BaseModel):
    """One self-test run as the device reported it, with its verdict in Vietnamese."""

    id: int
    at: datetime
    code: str
    verdict: str
    detail: str
    command_id: str | None
    baseline: bool
    level_vs_baseline_db: float | None
    figures: dict[str, Any] | None
    reasons: list[str]


class TrendPoint(BaseModel):
    """The level of one measured run."""

    at: datetime
    level_db: float | None
    level_vs_baseline_db: float | None
    code: str


class SelfTestsOut(BaseModel):
    """A device's latest run, its baseline, recent runs (newest first), 12 weeks of levels."""

    latest: RunOut | None
    baseline: RunOut | None
    items: list[RunOut]
    trend: list[TrendPoint]


class EventOut(BaseModel):
    """One device event: a self-test, a silence alarm or a power change."""

    id: int
    kind: str
    code: str
    at: datetime
    detail: str
    data: dict[str, Any]


class EventsOut(BaseModel):
    """A device's events, newest first."""

    items: list[EventOut]
