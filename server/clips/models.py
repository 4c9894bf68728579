"""Clips: normalised audio, content-addressed by the sha256 of the distribution file."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UtcDateTime, utcnow


class Clip(Base):
    """One normalised clip with the measurements of its original."""

    __tablename__ = "clips"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    original_sha256: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(300))
    topic: Mapped[str | None] = mapped_column(String(40), index=True)
    language: Mapped[str] = mapped_column(String(16), default="vi")
    notes: Mapped[str] = mapped_column(String(2000), default="")
    source: Mapped[str] = mapped_column(String(16), default="upload")  # upload | tts | compose
    original_filename: Mapped[str] = mapped_column(String(300), default="")
    original_ext: Mapped[str] = mapped_column(String(16), default="")
    original_format: Mapped[str] = mapped_column(String(100), default="")
    original_codec: Mapped[str] = mapped_column(String(100), default="")
    original_duration_s: Mapped[float] = mapped_column(Float)
    original_sample_rate: Mapped[int] = mapped_column(Integer)
    original_channels: Mapped[int] = mapped_column(Integer)
    original_size_bytes: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    size_bytes: Mapped[int] = mapped_column(Integer)
    loudness_before_lufs: Mapped[float | None] = mapped_column(Float)
    true_peak_before_dbtp: Mapped[float | None] = mapped_column(Float)
    loudness_after_lufs: Mapped[float | None] = mapped_column(Float)
    true_peak_after_dbtp: Mapped[float | None] = mapped_column(Float)
    peaks: Mapped[list[Any]] = mapped_column(JSON, default=list)
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id", ondelete="RESTRICT"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
