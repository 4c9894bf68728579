"""Programmes, their ordered clips, target zones and the record of every status change."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Float, ForeignKey, Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.clips.models import Clip
from server.db import Base, UtcDateTime, utcnow
from server.orgs.models import Zone
from server.relay.models import RelaySource

DRAFT = "draft"
SUBMITTED = "submitted"
APPROVED = "approved"
REJECTED = "rejected"
ACTIVE = "active"
ENDED = "ended"
CANCELLED = "cancelled"
STATUSES = (DRAFT, SUBMITTED, APPROVED, REJECTED, ACTIVE, ENDED, CANCELLED)
# Statuses the planner turns into playback items.
PLANNED = (APPROVED, ACTIVE)
# Statuses after which nothing about the programme changes any more.
FINISHED = (ENDED, CANCELLED)

programme_zones = Table(
    "programme_zones",
    Base.metadata,
    Column("programme_id", ForeignKey("programmes.id", ondelete="CASCADE"), primary_key=True),
    # A deleted zone simply drops out of the programmes that targeted it.
    Column("zone_id", ForeignKey("zones.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class ProgrammeClip(Base):
    """One position in a programme's ordered clip list (a clip may appear twice)."""

    __tablename__ = "programme_clips"

    programme_id: Mapped[int] = mapped_column(
        ForeignKey("programmes.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Deleting a clip is refused while an unfinished programme uses it (clips.service);
    # for finished programmes the entry just disappears.
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), index=True)

    clip: Mapped[Clip] = relationship(lazy="joined")


class ProgrammeRelay(Base):
    """A relay in a programme's content: a relay source for a while, with a fallback clip.

    Positions are shared with ProgrammeClip: together they number the programme's items
    0..n-1 in playing order.
    """

    __tablename__ = "programme_relays"

    programme_id: Mapped[int] = mapped_column(
        ForeignKey("programmes.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Deleting a source or a fallback clip is refused while an unfinished programme uses it.
    relay_source_id: Mapped[int] = mapped_column(
        ForeignKey("relay_sources.id", ondelete="CASCADE"), index=True
    )
    duration_s: Mapped[float] = mapped_column(Float)
    fallback_clip_id: Mapped[int] = mapped_column(
        ForeignKey("clips.id", ondelete="CASCADE"), index=True
    )

    source: Mapped[RelaySource] = relationship(lazy="joined")
    fallback: Mapped[Clip] = relationship(lazy="joined")


class Programme(Base):
    """What to play (clips), when (one-off or recurring), where (zones), at which priority."""

    __tablename__ = "programmes"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(String(2000), default="")
    # What e-boards show while it plays or is next (schedules.DISPLAY_TEXT_MAX characters).
    display_text: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    priority: Mapped[str] = mapped_column(String(16))
    # As an announcement over a lower item: "cut", "duck", or null (its zones' mode); the
    # ducked item's level (dB) and the ramps' length (issue 17).
    announcement_mode: Mapped[str | None] = mapped_column(String(8))
    duck_db: Mapped[float] = mapped_column(Float, default=-18.0, server_default="-18")
    duck_ramp_ms: Mapped[int] = mapped_column(Integer, default=300, server_default="300")
    status: Mapped[str] = mapped_column(String(16), index=True, default=DRAFT)
    start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    rrule: Mapped[str | None] = mapped_column(String(500))
    # Naive local wall time (Asia/Ho_Chi_Minh): the frame the rule is evaluated in.
    dtstart: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))
    valid_from: Mapped[datetime | None] = mapped_column(UtcDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    volume: Mapped[int | None] = mapped_column(Integer)
    org_unit_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), index=True
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    rejection_reason: Mapped[str] = mapped_column(String(1000), default="")
    # The bulletin from above this programme plays (accepted, or placed by its level).
    bulletin_id: Mapped[int | None] = mapped_column(
        ForeignKey("bulletins.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    clips: Mapped[list[ProgrammeClip]] = relationship(
        order_by=ProgrammeClip.position,
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
    )
    relays: Mapped[list[ProgrammeRelay]] = relationship(
        order_by=ProgrammeRelay.position,
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
    )
    zones: Mapped[list[Zone]] = relationship(secondary=programme_zones, lazy="selectin")


class ProgrammeTransition(Base):
    """One status change: from, to, who, when and why."""

    __tablename__ = "programme_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(
        ForeignKey("programmes.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    # None when the planner made the change (approved -> active -> ended).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    note: Mapped[str] = mapped_column(String(1000), default="")
