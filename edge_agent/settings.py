"""Agent settings: environment variables (LOA_AGENT_*) over an optional TOML config file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from protocol import TopicError, check_device_id

ENV_PREFIX = "LOA_AGENT_"
DEFAULT_CONFIG_FILE = Path("/etc/loa/agent.toml")
SIM_PROFILE = "sim"


class SettingsError(Exception):
    """The agent's settings are missing or invalid; the one-line message says what to set."""


class AgentSettings(BaseSettings):
    """Everything one agent needs to know before it can connect (env overrides the file)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", toml_file=None)

    device_id: str = Field(description="this device's id, also its MQTT username")
    mqtt_host: str = Field(min_length=1, description="broker host name or address")
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_password: SecretStr = Field(description="the device password issued by the server")
    firmware_profile: str | None = Field(
        default=None, description="profile name (loa-agent profiles) or a YAML file path"
    )
    data_dir: Path | None = Field(default=None, description="defaults to ./var/agent/<device_id>")
    audio_output: str | None = Field(
        default=None,
        pattern=r"^(sim|alsa:.+|raw:.+)$",
        description="'sim', 'alsa:<device>' or 'raw:<path>' (file or FIFO); default: the profile",
    )
    keepalive_s: int = Field(default=15, ge=2, le=600)
    telemetry_interval_s: float = Field(
        default=30, ge=1, le=3600, description="until a desired state from the server sets it"
    )
    min_backoff_s: float = Field(default=1.0, gt=0, le=600)
    max_backoff_s: float = Field(default=60.0, gt=0, le=3600)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=120)
    tls: bool = Field(default=False, description="connect over TLS, verifying the broker")
    tls_ca_file: Path | None = Field(
        default=None, description="the CA the broker's certificate must chain to (ca.pem)"
    )
    clock_wait_s: float = Field(
        default=300.0, gt=0, le=86400, description="retry a not-yet-valid certificate after this"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    clip_quota_mb: float = Field(
        default=2048, gt=0, description="disk for clips; unpinned ones are evicted beyond it"
    )
    clip_holdoff_s: float = Field(
        default=5.0, gt=0, le=600, description="wait for a zone publication before asking"
    )
    clip_retry_max_s: float = Field(default=300.0, gt=0, le=3600)
    clock_sync_interval_s: float = Field(default=30.0, gt=0, le=3600)
    clock_sync_window_s: float = Field(default=600.0, gt=0, le=86400)
    clock_sync_fast_interval_s: float = Field(
        default=5.0, gt=0, le=3600, description="probe this often while the error is above"
    )
    clock_sync_live_interval_s: float = Field(
        default=0.5, gt=0, le=3600, description="probe this often while live audio plays"
    )
    clock_sync_stable_error_ms: float = Field(
        default=0.2, ge=0, le=1000, description="probe slowly once a probe gains less than this"
    )
    player_lead_s: float = Field(
        default=1.0, ge=0.1, le=30, description="how far ahead the player decides and decodes"
    )
    slot_grace_s: float = Field(
        default=300.0, ge=0, le=86400, description="how late an item may still end"
    )
    display_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="e-boards: the board page's port on 127.0.0.1 (0: any free port); "
        "default: the firmware profile's display.port",
    )
    event_resend_s: float = Field(
        default=30.0, gt=0, le=3600, description="re-send unacknowledged events after this"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values first, then the environment, then the TOML file (if one is set)."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @field_validator("device_id")
    @classmethod
    def _valid_device_id(cls, value: str) -> str:
        try:
            return check_device_id(value)
        except TopicError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("mqtt_password")
    @classmethod
    def _non_empty_password(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _derived_defaults(self) -> AgentSettings:
        if self.data_dir is None:
            self.data_dir = Path("var", "agent", self.device_id)
        self.data_dir = self.data_dir.expanduser().resolve()
        if self.max_backoff_s < self.min_backoff_s:
            raise ValueError(
                f"max_backoff_s ({self.max_backoff_s}) must not be below "
                f"min_backoff_s ({self.min_backoff_s})"
            )
        return self

    @property
    def state_dir(self) -> Path:
        """The resolved data directory (never None after validation)."""
        assert self.data_dir is not None  # set by _derived_defaults
        return self.data_dir

    @property
    def profile_name(self) -> str:
        """The firmware profile to load (load_settings guarantees it is set)."""
        if self.firmware_profile is None:
            raise SettingsError(_missing_text("firmware_profile"))
        return self.firmware_profile


def load_settings(
    *, config_file: Path | None = None, sim: bool = False, **values: Any
) -> AgentSettings:
    """Read settings from values, LOA_AGENT_* and config_file; raise SettingsError in one line."""
    settings_cls: type[AgentSettings] = AgentSettings
    if config_file is not None:
        if not config_file.is_file():
            raise SettingsError(f"config file {config_file} does not exist (check --config)")
        settings_cls = _reading_file(config_file)
    try:
        settings = settings_cls(**values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, config_file)) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {config_file} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"config file {config_file} is unreadable: {exc}") from None
    if settings.firmware_profile is None:
        if not sim:
            raise SettingsError(_missing_text("firmware_profile", config_file))
        settings.firmware_profile = SIM_PROFILE
    return settings


def _reading_file(config_file: Path) -> type[AgentSettings]:
    """A settings class whose TOML source is config_file (pydantic-settings reads it per class)."""

    class AgentSettingsFromFile(AgentSettings):
        model_config = AgentSettings.model_config | SettingsConfigDict(toml_file=config_file)

    return AgentSettingsFromFile


def env_name(field: str) -> str:
    """The environment variable that sets a field."""
    return f"{ENV_PREFIX}{field.upper()}"


def _where(field: str, config_file: Path | None) -> str:
    place = f"in {config_file}" if config_file else "in the config file (--config)"
    return f"set {env_name(field)} or `{field} = ...` {place}"


def _missing_text(field: str, config_file: Path | None = None) -> str:
    return f"agent setting {field} is missing: {_where(field, config_file)}"


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    parts: list[str] = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        field = loc[0] if loc else ""
        if error["type"] == "missing":
            parts.append(_missing_text(field, config_file))
        elif error["type"] == "extra_forbidden":
            parts.append(
                f"unknown agent setting {field!r}"
                + (f" in {config_file}" if config_file else "")
                + f"; known settings: {', '.join(AgentSettings.model_fields)}"
            )
        elif not field:
            parts.append(f"agent settings: {error['msg'].removeprefix('Value error, ')}")
        else:
            msg = error["msg"].removeprefix("Value error, ")
            parts.append(f"agent setting {field} is invalid ({msg}): {_where(field, config_file)}")
    return "; ".join(parts)
