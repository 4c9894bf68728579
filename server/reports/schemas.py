"""API shapes for reports."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class ReportRowOut(BaseModel):
    """One planned playback on one device and its reported outcome."""

    device_id: int
    device_uid: str
    programme_id: int | None
    programme_title: str
    priority: str
    planned_start: datetime
    actual_start: datetime | None
    outcome: str
    reason: str


class ZoneReportOut(BaseModel):
    """Proof of play of one zone over a period.

    outcome: played, preempted, failed, missed (reported by the device), no_report (planned
    and past, nothing reported yet), upcoming, unplanned (reported, but no approved
    programme planned it in this zone).
    """

    zone_id: int
    zone_name: str
    since: datetime
    until: datetime
    counts: dict[str, int]
    truncated: bool
    rows: list[ReportRowOut]
