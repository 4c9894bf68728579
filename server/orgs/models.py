"""Org units (the administrative tree) and zones."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Integer, String, Table, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UtcDateTime, utcnow

ORG_KINDS = ("province", "district", "commune", "village", "other")

zone_devices = Table(
    "zone_devices",
    Base.metadata,
    Column("zone_id", ForeignKey("zones.id", ondelete="CASCADE"), primary_key=True),
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
)


class OrgUnit(Base):
    """A node of the administrative tree: province › (district) › commune › village."""

    __tablename__ = "org_units"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    code: Mapped[str | None] = mapped_column(String(32), unique=True)
    # The daily acoustic self-test of the unit's clusters (issue 17): local "HH:MM" or null
    # (none), and the volume it plays at. A device follows its nearest unit that sets one.
    selftest_daily_at: Mapped[str | None] = mapped_column(String(5))
    selftest_volume: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Zone(Base):
    """A named group of devices a broadcast targets."""

    __tablename__ = "zones"
    __table_args__ = (UniqueConstraint("org_unit_id", "name", name="uq_zones_org_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_unit_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000), default="")
    # How announcements treat a lower item playing here: "cut" (pause, resume) or "duck"
    # (keep it under the announcement at duck_db); a programme's own mode wins (issue 17).
    announcement_mode: Mapped[str] = mapped_column(String(8), default="cut", server_default="cut")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
