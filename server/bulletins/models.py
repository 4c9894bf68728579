"""Bulletins, their clips and targets, each commune's delivery, and communes' regular slots."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.clips.models import Clip
from server.db import Base, UtcDateTime, utcnow

# The circular's three levels (the same words as programme priorities).
NORMAL, PRIORITY, EMERGENCY = "normal", "priority", "emergency"
LEVELS = (NORMAL, PRIORITY, EMERGENCY)

# A bulletin on the sending side: approved by the sender's editorial board, then delivered.
SUBMITTED = "submitted"
APPROVED = "approved"  # deliveries exist from this moment
REJECTED = "rejected"
CANCELLED = "cancelled"
BULLETIN_STATUSES = (SUBMITTED, APPROVED, REJECTED, CANCELLED)

# One targeted commune's delivery: delivered > seen > scheduled | declined > played | expired.
DELIVERED = "delivered"
SEEN = "seen"
SCHEDULED = "scheduled"
DECLINED = "declined"
PLAYED = "played"
EXPIRED = "expired"
WITHDRAWN = "withdrawn"  # the sender cancelled the bulletin
DELIVERY_STATUSES = (DELIVERED, SEEN, SCHEDULED, DECLINED, PLAYED, EXPIRED, WITHDRAWN)
# Statuses after which a delivery changes no more.
DELIVERY_FINAL = (DECLINED, PLAYED, EXPIRED, WITHDRAWN)


class BulletinClip(Base):
    """One position in a bulletin's ordered audio."""

    __tablename__ = "bulletin_clips"

    bulletin_id: Mapped[int] = mapped_column(
        ForeignKey("bulletins.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="RESTRICT"), index=True)

    clip: Mapped[Clip] = relationship(lazy="joined")


class BulletinTarget(Base):
    """An org unit the sender targeted (any level of its subtree), as sent."""

    __tablename__ = "bulletin_targets"

    bulletin_id: Mapped[int] = mapped_column(
        ForeignKey("bulletins.id", ondelete="CASCADE"), primary_key=True
    )
    org_unit_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), primary_key=True, index=True
    )


class Bulletin(Base):
    """Content sent down the tree by a unit (a user) or an outside source (its key)."""

    __tablename__ = "bulletins"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    topic: Mapped[str] = mapped_column(String(100), default="")
    level: Mapped[str] = mapped_column(String(16), index=True)
    # For e-boards and the public page; for a text-only bulletin also the TTS input.
    text: Mapped[str] = mapped_column(String(5000), default="")
    # Shown on the public page and feed of the communes it reaches, once approved (issue 16).
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    # Thông tin thiết yếu: counted separately in reports.
    essential: Mapped[bool] = mapped_column(Boolean, default=False)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime)
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    # Emergency: replay this often until valid_until (None: once).
    repeat_every_min: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True, default=SUBMITTED)
    rejection_reason: Mapped[str] = mapped_column(String(1000), default="")
    # The sending unit: the sender's own org unit, or the source's.
    org_unit_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), index=True
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    source_id: Mapped[int | None] = mapped_column(
        ForeignKey("sources.id", ondelete="SET NULL"), index=True
    )
    # The clip made from `text` when the bulletin came without audio.
    tts_clip_id: Mapped[int | None] = mapped_column(ForeignKey("clips.id", ondelete="SET NULL"))
    approved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    approved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    clips: Mapped[list[BulletinClip]] = relationship(
        order_by=BulletinClip.position,
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
    )
    targets: Mapped[list[BulletinTarget]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )


class BulletinDelivery(Base):
    """One targeted commune's copy of a bulletin and what the commune did with it."""

    __tablename__ = "bulletin_deliveries"
    __table_args__ = (UniqueConstraint("bulletin_id", "org_unit_id", name="uq_delivery_unit"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bulletin_id: Mapped[int] = mapped_column(
        ForeignKey("bulletins.id", ondelete="CASCADE"), index=True
    )
    # The receiving commune (reach: the commune's users and everyone above it).
    org_unit_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), index=True, default=DELIVERED)
    status_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decline_reason: Mapped[str] = mapped_column(String(1000), default="")
    # The commune's programme made from it (accepted, or placed for priority/emergency).
    programme_id: Mapped[int | None] = mapped_column(
        ForeignKey("programmes.id", ondelete="SET NULL"), index=True
    )
    first_start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Priority: its place among the commune's priority items of the same slot (0 = head).
    slot_position: Mapped[int | None] = mapped_column(Integer)
    # Something the commune should know (e.g. "no regular slot: placed at valid_from").
    warning: Mapped[str] = mapped_column(String(500), default="")
    clusters_targeted: Mapped[int] = mapped_column(Integer, default=0)
    clusters_played: Mapped[int] = mapped_column(Integer, default=0)
    first_played_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_played_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class RegularSlot(Base):
    """A commune's regular broadcast slot, e.g. 05:00 and 17:00 Monday–Saturday."""

    __tablename__ = "regular_slots"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_unit_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="CASCADE"), index=True
    )
    # Local wall time (Asia/Ho_Chi_Minh), "HH:MM".
    start_time: Mapped[str] = mapped_column(String(5))
    # ISO weekdays it runs on, as digits: "123456" = Monday to Saturday.
    weekdays: Mapped[str] = mapped_column(String(7), default="123456")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
