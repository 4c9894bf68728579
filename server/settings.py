"""Server settings from the environment (prefix LOA_)."""

from __future__ import annotations

import json
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from server.access.proxies import parse_trusted_proxies
from server.cap.feedlist import parse_feeds
from server.live.urlguard import AllowList


class SettingsError(RuntimeError):
    """A setting that is missing or wrong; the message names the variable to set."""


class ServerSettings(BaseSettings):
    """Everything the server process needs to know, with embedded defaults for one machine."""

    model_config = SettingsConfigDict(env_prefix="LOA_", extra="ignore")

    data_dir: Path = Path("var")
    database_url: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    # The plain device listener: loopback unless opened on purpose (devices use TLS).
    mqtt_bind_host: str = "127.0.0.1"
    # The TLS device listener (0 turns it off). Devices are told mqtt_public_host.
    mqtt_tls_port: int = 8883
    mqtt_tls_bind_host: str = "0.0.0.0"
    mqtt_public_host: str | None = None
    # The operator's own certificate (e.g. Let's Encrypt fullchain.pem, privkey.pem) and,
    # for a private CA of theirs, its certificate; unset: a CA kept under data_dir/pki.
    mqtt_tls_certfile: Path | None = None
    mqtt_tls_keyfile: Path | None = None
    mqtt_tls_cafile: Path | None = None
    # The broker's loopback listener for the server account (devices use mqtt_port, where
    # the client id is forced to the username); default mqtt_port + 1.
    mqtt_server_port: int | None = None
    mqtt_password: SecretStr | None = None
    admin_password: SecretStr | None = None
    demo: bool = False
    token_ttl_hours: float = 12.0
    session_ttl_hours: float = 12.0  # console cookie lifetime
    login_max_failures: int = 5  # per username + address ...
    login_window_s: float = 300.0  # ... within this many seconds
    # Reverse proxies whose X-Forwarded-For is believed: addresses or CIDRs, comma-separated.
    # Default none: the peer address is the client, whatever the request's headers say.
    trusted_proxies: str = ""
    # Hosts a relay may reach although not public: names (*.lan) or CIDRs, comma-separated.
    # Default none: loopback, private, link-local... addresses are refused for relays.
    relay_allowed_hosts: str = ""
    cookie_secure: bool = True  # false only for plain-HTTP installs (the demo)
    command_ttl_s: float = 60.0  # a device ignores a command older than this
    telemetry_sample_interval_s: float = (
        300.0  # telemetry history: one sample per device per interval
    )
    telemetry_retention_days: float = 7.0
    mosquitto_bin: str = "mosquitto"
    manage_broker: bool = True
    mqtt_max_packet_bytes: int = 2 * 1024 * 1024
    # Planning and distribution.
    schedule_horizon_days: int = 7
    planner_tick_s: float = 15.0
    # How often committed events whose process died before dispatching them are picked up.
    outbox_sweep_s: float = 5.0
    planner_enabled: bool = True
    conflict_horizon_days: int = 60
    clip_publish_inflight: int = 8
    # Clip library.
    clip_max_bytes: int = 200 * 1024 * 1024
    clip_max_duration_s: float = 3 * 3600.0
    clip_target_lufs: float = -16.0
    clip_true_peak_db: float = -1.5
    clip_bitrate: int = 32000
    tts_max_chars: int = 2000
    piper_model_path: Path | None = None
    # CAP 1.2 (server/cap): the largest alert document taken in; the only hosts an alert's
    # audio <resource> may be fetched from (names, *.suffixes or CIDRs; none: refused);
    # the sender Loa writes in its feed; whether the feed also carries priority bulletins.
    cap_max_bytes: int = 256_000
    cap_resource_allowed_hosts: str = ""
    cap_sender: str = "loa"
    cap_feed_include_priority: bool = False
    # CAP in, more (server/cap/testzone.py, server/cap/poll.py): the zone Test and Exercise
    # alerts play on (unset: they are only logged, never played); the Atom feeds the planner
    # polls, as "SOURCE_ID=URL" entries separated by commas or spaces (each feed's alerts are
    # taken in as that source: its org unit and level limits apply; the hosts must be on
    # cap_resource_allowed_hosts), and how often, in seconds.
    cap_test_zone_id: int | None = Field(default=None, ge=1)
    cap_feeds: str = ""
    cap_feed_interval_s: float = Field(default=300.0, ge=30.0, le=3600.0)

    # Monthly report export (docs/reports.md, server/reports/export_job.py): from
    # report_export_hour on the 1st of each month (local time) the previous month's summary of
    # report_export_org_unit_id is written to report_export_dir and/or POSTed to
    # report_export_url (with report_export_token as a bearer token), retried
    # report_export_attempts times with a doubling delay; off while neither is set.
    report_export_dir: Path | None = None
    report_export_url: str | None = Field(default=None, max_length=2000)
    report_export_token: SecretStr | None = None
    report_export_org_unit_id: int | None = Field(default=None, ge=1)
    report_export_hour: int = Field(default=2, ge=0, le=23)
    report_export_attempts: int = Field(default=5, ge=1, le=10)
    report_export_backoff_s: float = Field(default=30.0, ge=0.0, le=600.0)
    report_export_timeout_s: float = Field(default=30.0, ge=1.0, le=600.0)

    # Scheduled relay (docs/operations.md, server/relay/runner.py): a relay item's frames are
    # heard relay_playout_delay_ms after capture (room for a 4G link); a device that hears
    # no frames for relay_fallback_after_s plays the item's fallback clip. A source silent or
    # gone for relay_dead_air_s raises a dead-air alarm and the server stops sending, so every
    # device falls back; relay_silence_dbfs is the level below which audio counts as silent.
    relay_playout_delay_ms: int = Field(default=2000, ge=300, le=10_000)
    # Live sessions' Opus frame length (docs/operations.md): 40 ms halves the messages every
    # device reads and decodes, but needs agents that know it and, at a 200 ms playout delay,
    # leaves too little margin at a session's start (docs/benchmarks.md): 20 until then.
    live_frame_ms: Literal[20, 40] = 20
    # Live frames leave in groups covering this much audio, back to back: every device wakes
    # once a group, not once a frame (a receiver's CPU is mostly wake-ups), and the earlier
    # frames of a group wait for the last, a frame of the playout delay (docs/benchmarks.md).
    live_send_ms: int = Field(default=40, ge=20, le=100)
    relay_fallback_after_s: float = Field(default=3.0, ge=0.5, le=60.0)
    relay_dead_air_s: float = Field(default=5.0, ge=1.0, le=120.0)
    relay_silence_dbfs: float = Field(default=-55.0, ge=-90.0, le=-10.0)

    # Citizen feedback (server/feedback): name, phone and attachment of a case are erased
    # feedback_retention_days after it closes; a commune without categories answers in
    # feedback_default_due_days; submissions per client address and per phone number within
    # feedback_rate_window_s; the largest photo or voice note taken in.
    feedback_retention_days: int = Field(default=365, ge=1, le=3650)
    feedback_default_due_days: int = Field(default=10, ge=1, le=90)
    feedback_per_address: int = Field(default=5, ge=1, le=1000)
    feedback_per_phone: int = Field(default=3, ge=1, le=1000)
    feedback_rate_window_s: float = Field(default=3600.0, ge=60.0, le=7 * 86400.0)
    feedback_max_attachment_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024
    )
    feedback_max_voice_s: float = Field(default=300.0, ge=5.0, le=1800.0)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        parse_trusted_proxies(value)  # a typo fails at start-up, not at the first sign-in
        return value

    @field_validator("cap_feeds")
    @classmethod
    def _check_cap_feeds(cls, value: str) -> str:
        parse_feeds(value)  # a typo fails at start-up, not at the first poll
        return value

    @field_validator("live_frame_ms", mode="before")
    @classmethod
    def _live_frame_ms_from_text(cls, value: object) -> object:
        # The environment gives text, and a Literal of ints does not read "40" as 40.
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @field_validator("relay_allowed_hosts", "cap_resource_allowed_hosts")
    @classmethod
    def _check_relay_allowed_hosts(cls, value: str) -> str:
        AllowList.parse(value)  # a typo fails at start-up, not at the first relay
        return value

    @cached_property
    def db_url(self) -> str:
        """The SQLAlchemy URL: LOA_DATABASE_URL, else SQLite under the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'loa.db').resolve()}"

    @property
    def server_mqtt_port(self) -> int:
        """The port the server's own MQTT links connect to (LOA_MQTT_SERVER_PORT)."""
        return self.mqtt_server_port if self.mqtt_server_port is not None else self.mqtt_port + 1

    @property
    def device_mqtt_host(self) -> str:
        """The broker's name as devices reach it (LOA_MQTT_PUBLIC_HOST, else LOA_MQTT_HOST)."""
        return self.mqtt_public_host or self.mqtt_host

    @property
    def broker_dir(self) -> Path:
        """Where the generated Mosquitto config, password and ACL files live."""
        return self.data_dir / "mosquitto"

    def mqtt_secret(self) -> str:
        """The server's own MQTT password (generated and kept under data_dir in demo)."""
        if self.mqtt_password is not None:
            return self.mqtt_password.get_secret_value()
        return self._demo_secret("mqtt_password", "LOA_MQTT_PASSWORD")

    def admin_secret(self) -> str:
        """The bootstrap admin password (generated and kept under data_dir in demo)."""
        if self.admin_password is not None:
            return self.admin_password.get_secret_value()
        return self._demo_secret("admin_password", "LOA_ADMIN_PASSWORD")

    def _demo_secret(self, key: str, env_name: str) -> str:
        if not self.demo:
            raise SettingsError(
                f"{env_name} is not set. Set it in the environment (only `loa-server demo` "
                "generates secrets by itself)."
            )
        path = self.data_dir / "demo-secrets.json"
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        if key not in stored:
            stored[key] = secrets.token_urlsafe(12)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(stored))
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        return stored[key]
