"""A relay source: a station's audio stream an administrator approved for relays."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
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
