"""API shapes for devices and their health."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schedules import Priority
from server.bounds import Id, RequestBody, Volume


class DeviceCreate(RequestBody):
    """Register a cluster; its MQTT credentials come back once in the answer."""

    model_config = ConfigDict(extra="forbid")

    uid: str = Field(min_length=3, max_length=63, description="wire id, e.g. 'xa-an-binh-01'")
    name: str = Field(min_length=1, max_length=200)
    org_unit_id: Id
    firmware_profile: str = Field(min_length=1, max_length=100)
    location: str = Field(default="", max_length=300)
    zone_ids: list[Id] = Field(default_factory=list, max_length=1000)


class DeviceUpdate(RequestBody):
    """Fields of a device that may change; volume becomes a new desired state."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    location: str | None = Field(default=None, max_length=300)
    firmware_profile: str | None = Field(default=None, min_length=1, max_length=100)
    org_unit_id: Id | None = None
    volume: Volume | None = None


class DeviceOut(BaseModel):
    """A device with its health as last reported."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    uid: str
    name: str
    org_unit_id: int
    firmware_profile: str
    location: str
    zone_ids: list[int]
    created_at: datetime
    revoked: bool
    online: bool
    last_seen: datetime | None
    online_since: datetime | None
    agent_version: str | None
    reported_profile: str | None
    telemetry: dict[str, Any] | None
    telemetry_at: datetime | None
    volume: int
    state_version: int
    reported_state_version: int | None
    reported_schedule_version: int | None
    # Power from the latest telemetry (mains, battery, battery_low; null: not reported), the
    # latest self-test's code and time, the latest silence alarm (issue 17).
    power: str | None = None
    selftest_code: str | None = None
    selftest_at: datetime | None = None
    silence_at: datetime | None = None


class Credentials(BaseModel):
    """MQTT credentials for one device, shown once."""

    username: str
    password: str
    mqtt_host: str
    mqtt_port: int = Field(description="the plain listener (the broker's loopback only)")
    mqtt_tls_port: int | None = Field(description="the TLS listener devices use; null: TLS off")
    ca_pem: str | None = Field(
        description="the CA devices trust (write to /etc/loa/ca.pem); null: a public CA"
    )
    agent_config_toml: str = Field(description="drop into /etc/loa/agent.toml on the Pi")


class DeviceRegistered(BaseModel):
    """Answer to a registration or a credential rotation."""

    device: DeviceOut
    credentials: Credentials


class DevicePage(BaseModel):
    """One page of devices."""

    items: list[DeviceOut]
    total: int


CommandName = Literal["test_tone", "set_volume", "restart_agent", "resync"]


class CommandCreate(RequestBody):
    """A remote command: volume for set_volume, seconds for test_tone."""

    model_config = ConfigDict(extra="forbid")

    name: CommandName
    volume: Volume | None = Field(default=None, description="set_volume only")
    seconds: float | None = Field(default=None, ge=0.5, le=30, description="test_tone only")


class CommandOut(BaseModel):
    """A command and the device's answer; status sent, ok, failed or no_answer."""

    id: str
    device_id: int
    name: str
    args: dict[str, Any]
    user_id: int | None
    created_at: datetime
    expires_at: datetime
    status: str
    detail: str
    acked_at: datetime | None


class TelemetryPoint(BaseModel):
    """One stored health sample."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime
    cpu_temp_c: float | None
    signal_dbm: float | None
    disk_used_pct: float | None
    disk_free_mb: float | None
    load_1m: float | None
    mem_used_pct: float | None


class TelemetryHistory(BaseModel):
    """A device's health samples over a period, oldest first."""

    device_id: int
    since: datetime
    until: datetime
    points: list[TelemetryPoint]


class BoardItemOut(BaseModel):
    """One playback as an e-board shows it."""

    item_id: str
    programme_id: int
    title: str = Field(description="'' when the programme is gone and the schedule has no text")
    text: str = Field(description="the programme's display text ('' when it has none)")
    priority: Priority
    start: datetime
    end: datetime


class DeviceDisplayOut(BaseModel):
    """What an e-board shows now, from the newest schedule sent to it (its display part)."""

    device_id: int
    device_uid: str
    has_display: bool = Field(description="false: the firmware profile has no screen")
    now: datetime
    unit_name: str | None = Field(description="the commune the board names")
    showing: BoardItemOut | None = Field(description="playing now (the most urgent if several)")
    next: BoardItemOut | None = Field(description="the next playback to start")
    today: list[BoardItemOut] = Field(description="today's playbacks (Asia/Ho_Chi_Minh day)")
    emergency: list[BoardItemOut] = Field(
        description="emergencies in force: per programme, its playback now or its next one"
    )
    schedule_version: int | None = Field(description="the newest schedule sent")
    published_at: datetime | None
    reported_schedule_version: int | None = Field(description="the schedule the board holds")
    in_sync: bool
