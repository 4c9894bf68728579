"""Outside sources: an API key bound to an org unit and a highest level."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UtcDateTime, utcnow

# A source key is a bearer token starting with this, so the sign-in check knows where to look.
KEY_PREFIX = "loasrc_"


class Source(Base):
    """A department's or a source-information system's key; it acts as its own service user."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    org_unit_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), index=True
    )
    # The service user (role "source") a key signs in as: audit, reach and permissions work
    # for it as for a person.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), unique=True)
    # The highest level it may send: normal < priority < emergency.
    max_level: Mapped[str] = mapped_column(String(16), default="normal")
    # Levels whose bulletins skip the editorial approval, comma-separated ("" = none).
    trusted_levels: Mapped[str] = mapped_column(String(40), default="")
    # The first characters of the key, to tell keys apart in lists and logs; the key itself is
    # shown once and stored as its SHA-256.
    key_hint: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
