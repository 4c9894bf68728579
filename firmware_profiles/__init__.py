"""Firmware profiles: one YAML per supported hardware build, a schema and a loader."""

from firmware_profiles.loader import ProfileError, available_profiles, load_profile, parse_profile
from firmware_profiles.schema import (
    I2S_GPIO_PINS,
    AmplifierConfig,
    AudioConfig,
    DisplayConfig,
    FirmwareProfile,
    ModemConfig,
    NetworkConfig,
    StatusLedConfig,
    VolumeConfig,
)

__all__ = [
    "I2S_GPIO_PINS",
    "AmplifierConfig",
    "AudioConfig",
    "DisplayConfig",
    "FirmwareProfile",
    "ModemConfig",
    "NetworkConfig",
    "ProfileError",
    "StatusLedConfig",
    "VolumeConfig",
    "available_profiles",
    "load_profile",
    "parse_profile",
]
