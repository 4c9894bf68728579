"""Devices: one edge agent = one loudspeaker cluster, with its last known health."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, UtcDateTime, utcnow
from server.orgs.models import Zone, zone_devices


class Device(Base):
    """A registered cluster, its MQTT identity and its health as last reported."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    org_unit_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), index=True
    )
    firmware_profile: Mapped[str] = mapped_column(String(100))
    location: Mapped[str] = mapped_column(String(300), default="")
    mqtt_password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Health, from birth/will/telemetry on MQTT.
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    conn_id: Mapped[str | None] = mapped_column(String(64))
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime)
    online_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    agent_version: Mapped[str | None] = mapped_column(String(200))
    reported_profile: Mapped[str | None] = mapped_column(String(200))
    telemetry: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    telemetry_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    state_version: Mapped[int] = mapped_column(Integer, default=0)
    reported_state_version: Mapped[int | None] = mapped_column(Integer)
    reported_schedule_version: Mapped[int | None] = mapped_column(Integer)
    volume: Mapped[int] = mapped_column(Integer, default=70)

    zones: Mapped[list[Zone]] = relationship(secondary=zone_devices, lazy="selectin")
