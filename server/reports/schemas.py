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


# -- the summary report (docs/reports.md documents every field; bump SCHEMA_VERSION on change)

SCHEMA_VERSION = "1.1"  # 1.1: relay minutes from proof of play, relay_* fields


class BroadcastFigures(BaseModel):
    """Cluster-minutes reported played, by origin and by topic."""

    minutes: float
    by_origin: dict[str, float]
    by_topic: dict[str, float]
    # Relay items (1.1): their stretches heard as the fallback clip and as silence (minutes,
    # inside the programme's origin), and the items by how they were heard.
    relay_fallback: float = 0.0
    relay_silent: float = 0.0
    relay_items: dict[str, int] = {}


class ProgrammeFigures(BaseModel):
    """Planned items × clusters, against what the clusters reported."""

    planned: int
    reported: int
    played: int
    on_time: int
    not_played: int
    missed: int
    preempted: int
    failed: int
    planned_not_reported: int
    reported_not_planned: int
    not_played_reasons: dict[str, int]


class BulletinFigures(BaseModel):
    """Deliveries of bulletins from above received in the period."""

    delivered: int
    accepted: int
    declined: int
    played: int
    expired: int
    withdrawn: int
    played_without_report: int
    priority: int
    priority_played_in_validity: int
    essential: int
    essential_reached: int
    essential_reached_share: float | None


class EmergencyFigures(BaseModel):
    """Emergency programmes: clusters targeted and reached, time to audible."""

    programmes: int
    clusters_targeted: int
    clusters_reached: int
    p95_time_to_audible_s: float | None


class AvailabilityFigures(BaseModel):
    """Device availability from the presence history."""

    clusters: int
    online_share: float | None
    faulty_clusters: int
    longest_outage_s: float


class FeedbackFigures(BaseModel):
    """Citizen feedback cases of the units handling them (docs/reports.md, "Feedback")."""

    received: int = 0
    handled: int = 0  # answered or closed in the period (the first of the two)
    handled_on_time: int = 0  # ... at or before the case's due date
    overdue_open: int = 0  # at the period's end (or now): due, neither answered nor closed
    median_hours_to_answer: float | None = None


class FeedbackUnitRow(BaseModel):
    """One unit's feedback figures (its own cases), or the total of the chosen unit."""

    org_unit_id: int
    name: str
    kind: str
    feedback: FeedbackFigures


class FeedbackReportOut(BaseModel):
    """Feedback figures of each unit of the chosen unit's subtree that had a case, and total."""

    org_unit: dict[str, int | str]
    since: datetime
    until: datetime
    generated_at: datetime
    rows: list[FeedbackUnitRow]
    total: FeedbackUnitRow


class SummaryRow(BaseModel):
    """The figures of one org unit (a child of the chosen unit, or the total)."""

    org_unit_id: int
    name: str
    kind: str
    broadcast: BroadcastFigures
    programmes: ProgrammeFigures
    bulletins: BulletinFigures
    emergencies: EmergencyFigures
    availability: AvailabilityFigures
    feedback: FeedbackFigures = FeedbackFigures()
    # Clusters whose latest self-test in the period found a fault (issue 17).
    selftest_failed: int = 0


class PeriodOut(BaseModel):
    """The period asked for: local dates (both included) and the UTC window."""

    label: str
    first_day: str
    last_day: str
    since: datetime
    until: datetime
    time_zone: str


class SeriesPoint(BaseModel):
    """Availability of the chosen unit's clusters over one local day or month."""

    start: str
    online_share: float | None


class SummaryOut(BaseModel):
    """Reports upward: one row per child unit and the total of the chosen unit."""

    schema_version: str
    generated_at: datetime
    org_unit: dict[str, int | str]
    period: PeriodOut
    rows: list[SummaryRow]
    total: SummaryRow
    availability_series: list[SeriesPoint]
    notes: list[str]
