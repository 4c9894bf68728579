"""A relay source: a station's audio stream an administrator approved for relays."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UtcDateTime, utcnow

KINDS = ("national", "provincial", "other")
MAX_URL = 2000


class RelaySource(Base):
    """An http(s) audio stream owned by an org unit; live and scheduled relay use only these."""

    __tablename__ = "relay_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(MAX_URL))
    kind: Mapped[str] = mapped_column(String(16), default="other")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Set on purpose (and audited) to register a stream on a private or loopback address.
    allow_private: Mapped[bool] = mapped_column(Boolean, default=False)
    org_unit_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), index=True
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


SCHEDULED = "scheduled"
RUNNING = "running"
DEAD_AIR = "dead_air"
ENDED = "ended"
FAILED = "failed"
RUN_STATES = (SCHEDULED, RUNNING, DEAD_AIR, ENDED, FAILED)


class RelayRun(Base):
    """One scheduled relay the server carried out (or failed to): its session and alarms."""

    __tablename__ = "relay_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    # schedules.relay_session_id: the live session whose frames carried it.
    session_id: Mapped[str] = mapped_column(String(40), unique=True)
    programme_id: Mapped[int | None] = mapped_column(Integer, index=True)
    item_id: Mapped[str] = mapped_column(String(200))
    relay_source_id: Mapped[int | None] = mapped_column(
        ForeignKey("relay_sources.id", ondelete="SET NULL"), index=True
    )
    org_unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("org_units.id", ondelete="SET NULL"), index=True
    )
    planned_start: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    planned_end: Mapped[datetime] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16), default=SCHEDULED, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    frames_sent: Mapped[int] = mapped_column(Integer, default=0)
    dead_air_s: Mapped[float] = mapped_column(Float, default=0.0)  # total, over the run
    # The open dead-air alarm, for the dashboard; cleared_at is set when audio came back.
    alarm: Mapped[str] = mapped_column(String(300), default="")
    alarm_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    alarm_cleared_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
