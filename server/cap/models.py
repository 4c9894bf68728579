"""CAP alerts received: (sender, identifier) once, and the bulletin each became."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UtcDateTime, utcnow


class CapMessage(Base):
    """One CAP message taken in; a repeat of (sender, identifier) answers with its bulletin."""

    __tablename__ = "cap_messages"
    __table_args__ = (UniqueConstraint("sender", "identifier", name="uq_cap_sender_identifier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sender: Mapped[str] = mapped_column(String(255))
    identifier: Mapped[str] = mapped_column(String(255))
    msg_type: Mapped[str] = mapped_column(String(16))  # Alert | Update | Cancel
    status: Mapped[str] = mapped_column(String(16))  # Actual | Exercise | System | Test | Draft
    # The bulletin it made, updated or cancelled (None: logged only, e.g. a Test alert).
    bulletin_id: Mapped[int | None] = mapped_column(
        ForeignKey("bulletins.id", ondelete="SET NULL"), index=True
    )
    # Who posted it: the source, or an admin.
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
