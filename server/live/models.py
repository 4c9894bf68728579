"""The live-session registry: every server process's sessions, listed and stopped by any."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base


class LiveSessionRow(Base):
    """One live session as its owning process last wrote it (about once a second)."""

    __tablename__ = "live_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))  # the LiveService (process) running it
    org_unit_ids: Mapped[list[int]] = mapped_column(JSON)  # who may see and stop it
    view: Mapped[dict[str, Any]] = mapped_column(JSON)  # LiveSessionOut as JSON
    state: Mapped[str] = mapped_column(String(16))  # running | ended
    # Set by another process's DELETE (the stop reason); the owner polls for it.
    stop_requested: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[float] = mapped_column(Float)  # the owner's wall clock (server time)
