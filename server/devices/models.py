"""Devices: one edge agent = one loudspeaker cluster, with its last known health."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String
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
    # WGS 84, for CAP alert areas (polygons and circles); None = not surveyed.
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
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
    # The latest acoustic self-test's code (protocol SELFTEST_CODES) and when it ran, and the
    # latest silence alarm: kept here so health flags need no query (issue 17).
    selftest_code: Mapped[str | None] = mapped_column(String(40))
    selftest_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    silence_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    zones: Mapped[list[Zone]] = relationship(secondary=zone_devices, lazy="selectin")


class TelemetrySample(Base):
    """One stored health sample (at most one per device per LOA_TELEMETRY_SAMPLE_INTERVAL_S)."""

    __tablename__ = "telemetry_samples"
    __table_args__ = (Index("ix_telemetry_samples_device_at", "device_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    cpu_temp_c: Mapped[float | None] = mapped_column(Float)
    signal_dbm: Mapped[float | None] = mapped_column(Float)
    disk_used_pct: Mapped[float | None] = mapped_column(Float)
    disk_free_mb: Mapped[float | None] = mapped_column(Float)
    load_1m: Mapped[float | None] = mapped_column(Float)
    mem_used_pct: Mapped[float | None] = mapped_column(Float)


class DeviceCommand(Base):
    """A remote command sent to a device and, once it answers, its acknowledgement."""

    __tablename__ = "device_commands"
    __table_args__ = (Index("ix_device_commands_device_created", "device_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the wire id, echoed in the ack
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # sent -> ok | failed (the device's ack); a sent command past expires_at got no answer.
    status: Mapped[str] = mapped_column(String(16), default="sent")
    detail: Mapped[str] = mapped_column(String(500), default="")
    acked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
