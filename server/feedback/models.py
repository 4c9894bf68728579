"""Feedback categories a commune edits, cases citizens open, and each step staff take."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UtcDateTime, utcnow

NEW = "new"
ASSIGNED = "assigned"
ANSWERED = "answered"
FORWARDED = "forwarded"
CLOSED = "closed"
STATUSES = (NEW, ASSIGNED, ANSWERED, FORWARDED, CLOSED)
OPEN = (NEW, ASSIGNED, ANSWERED, FORWARDED)


class FeedbackCategory(Base):
    """A kind of feedback a commune takes ("Đất đai", "Môi trường"), with its answer time."""

    __tablename__ = "feedback_categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_unit_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    due_days: Mapped[int] = mapped_column(Integer, default=10)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FeedbackCase(Base):
    """One citizen's report, followed by its tracking code; name and phone are staff-only."""

    __tablename__ = "feedback_cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    tracking_code: Mapped[str] = mapped_column(String(32), unique=True)
    # The unit handling it now (moves on forward); the unit it was sent to stays.
    org_unit_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), index=True
    )
    received_by_unit_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), index=True
    )
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("feedback_categories.id", ondelete="SET NULL"), index=True
    )
    category_name: Mapped[str] = mapped_column(String(100), default="")  # as chosen
    content: Mapped[str] = mapped_column(String(5000))
    # Personal data: staff of the handling unit only; erased after closed_at + retention.
    name: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    personal_erased_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # An optional photo (re-encoded, metadata stripped) or voice note, stored by sha256.
    attachment_sha256: Mapped[str | None] = mapped_column(String(64))
    attachment_type: Mapped[str | None] = mapped_column(String(64))
    attachment_size: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=NEW, index=True)
    assigned_to: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    answer: Mapped[str] = mapped_column(String(5000), default="")
    answer_public: Mapped[bool] = mapped_column(Boolean, default=False)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The programme that reads the answer on the horns, when it was broadcast.
    programme_id: Mapped[int | None] = mapped_column(
        ForeignKey("programmes.id", ondelete="SET NULL")
    )
    due_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Hash of the sender's address (rate limits and abuse review; never the address itself).
    sender_hash: Mapped[str] = mapped_column(String(64), default="", index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FeedbackStep(Base):
    """One thing staff did with a case: assign, answer, forward, close (also in the audit log)."""

    __tablename__ = "feedback_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("feedback_cases.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    to_org_unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("org_units.id", ondelete="SET NULL")
    )
    note: Mapped[str] = mapped_column(String(5000), default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
