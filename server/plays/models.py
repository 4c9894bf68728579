"""One proof-of-play record per (device, sequence number)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UtcDateTime, utcnow


class PlayRecord(Base):
    """What a device reports it did with one scheduled item (times are server-clock UTC)."""

    __tablename__ = "play_events"
    __table_args__ = (
        UniqueConstraint("device_id", "seq", name="uq_play_events_device_seq"),
        Index("ix_play_events_planned_start", "planned_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    item_id: Mapped[str] = mapped_column(String(200))
    # No foreign key: a device may report a programme this server no longer has, and the
    # event must still be stored (and acknowledged) rather than retried forever.
    programme_id: Mapped[int | None] = mapped_column(Integer, index=True)
    priority: Mapped[str] = mapped_column(String(16))
    planned_start: Mapped[datetime] = mapped_column(UtcDateTime)
    actual_start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(300), default="")
    clock_offset_ms: Mapped[float | None] = mapped_column(Float)
    clock_error_ms: Mapped[float | None] = mapped_column(Float)
    # Relay items only (protocol PlayEvent): how the relayed stretches were heard.
    relay_mode: Mapped[str | None] = mapped_column(String(16))
    relayed_s: Mapped[float | None] = mapped_column(Float)
    fallback_s: Mapped[float | None] = mapped_column(Float)
    silent_s: Mapped[float | None] = mapped_column(Float)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class DeviceEventRecord(Base):
    """What a device found out about itself (protocol.DeviceEvent): self-tests, silence, power."""

    __tablename__ = "device_events"
    __table_args__ = (
        # Seqs come from the same counter as plays', so (device, seq) is unique across both.
        UniqueConstraint("device_id", "seq", name="uq_device_events_device_seq"),
        Index("ix_device_events_device_kind_at", "device_id", "kind", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE", name="fk_device_events_device")
    )
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # selftest | silence | power
    code: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    detail: Mapped[str] = mapped_column(String(500), default="")
    # The console command that asked for a self-test (devices' command id); null: scheduled.
    command_id: Mapped[str | None] = mapped_column(String(64))
    # Kind-specific figures: self-test figures, level vs baseline, baseline flag, reasons;
    # a silence's item and seconds (protocol.DeviceEvent fields, JSON-safe).
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
