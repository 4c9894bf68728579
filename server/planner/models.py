"""What the planner published: schedule versions per device, clips per zone, replan requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UtcDateTime, utcnow


class DeviceSchedule(Base):
    """One published version of a device's schedule document (the latest few are kept)."""

    __tablename__ = "device_schedules"
    __table_args__ = (UniqueConstraint("device_id", "version", name="uq_device_schedules_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ZoneClip(Base):
    """A clip whose chunks were (or are being) published once to a zone's clip topic."""

    __tablename__ = "zone_clips"

    zone_id: Mapped[int] = mapped_column(
        ForeignKey("zones.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Set when the broker has acknowledged every chunk; until then the planner re-queues it.
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class PlannerState(Base):
    """One row: the latest replan request from any API process, read by the planner leader."""

    __tablename__ = "planner_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    replan_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
