"""Device presence history: every online/offline transition, for availability reports."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UtcDateTime
from server.plays.models import PlayRecord


class DevicePresence(Base):
    """One transition of a device: online (birth) or offline (will, goodbye) at a time."""

    __tablename__ = "device_presence"
    __table_args__ = (Index("ix_device_presence_device_at", "device_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    online: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class PlayRollup(Base):
    """Proof of play summed per local month, org unit, programme, outcome, reason, relay mode.

    A cache the summary report keeps (server/reports/rollup.py): rows of play_events up to
    the watermark in PlayRollupState are summed here, newer ones are read raw. Several rows
    may share a key (one per refresh); readers sum them.
    """

    __tablename__ = "play_rollups"
    __table_args__ = (Index("ix_play_rollups_month_unit", "month", "org_unit_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[str] = mapped_column(String(7))  # local (Asia/Ho_Chi_Minh) "YYYY-MM"
    org_unit_id: Mapped[int] = mapped_column(Integer)  # the device's unit when summed
    programme_id: Mapped[int | None] = mapped_column(Integer)
    priority: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(16))
    n: Mapped[int] = mapped_column(Integer)
    on_time: Mapped[int] = mapped_column(Integer)
    played_s: Mapped[float] = mapped_column(Float)
    # Relay items (migration 0011): the device's relay mode, and the seconds of its relayed
    # stretches heard as relayed frames, as the fallback clip and as silence.
    relay_mode: Mapped[str | None] = mapped_column(String(16))
    relayed_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    fallback_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    silent_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")


class PlayRollupState(Base):
    """The one row holding the highest play_events id already summed into play_rollups."""

    __tablename__ = "play_rollup_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)


# Emergency plays are read one by one (time to audible): a small partial index finds them
# without scanning a year of proof of play.
EMERGENCY_PLAYS = Index(
    "ix_play_events_emergency",
    PlayRecord.planned_start,
    postgresql_where=PlayRecord.priority == "emergency",
    sqlite_where=PlayRecord.priority == "emergency",
)


class ReportExport(Base):
    """One run of the monthly export to one destination: what was sent, where, and how it went."""

    __tablename__ = "report_exports"
    __table_args__ = (Index("ix_report_exports_period", "period", "org_unit_id", "target"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(7))  # local "YYYY-MM"
    org_unit_id: Mapped[int] = mapped_column(Integer)  # kept when the unit goes: it is a record
    target: Mapped[str] = mapped_column(String(16))  # "folder" or "url"
    destination: Mapped[str] = mapped_column(String(2000))  # file path, or URL without query
    status: Mapped[str] = mapped_column(String(16))  # "sent" or "failed"
    attempts: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    error: Mapped[str] = mapped_column(String(500), default="")
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime)
