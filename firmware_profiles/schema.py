"""Pydantic schema of a firmware profile: what one supported hardware build looks like."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Raspberry Pi 40-pin headers expose BCM GPIO 0-27 on every model we support.
PI_HEADER_GPIO_MAX = 27
# I2S audio (PCM_CLK, PCM_FS, PCM_DIN, PCM_DOUT) occupies these BCM pins on every Pi.
I2S_GPIO_PINS: frozenset[int] = frozenset({18, 19, 20, 21})
# I2C bus 1 (SDA1, SCL1) on every Pi; 0x00-0x02 and 0x78-0x7F are reserved I2C addresses.
I2C1_GPIO_PINS: frozenset[int] = frozenset({2, 3})
I2C_ADDRESS_MIN, I2C_ADDRESS_MAX = 0x03, 0x77

AudioInterface = Literal["usb", "i2s", "hdmi", "headphone", "file"]
AmplifierKind = Literal["relay", "enable_pin", "none"]
ModemKind = Literal["none", "mmcli", "at"]


class _Strict(BaseModel):
    """Base for profile sections: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AudioConfig(_Strict):
    """The ALSA output path and its measured latency."""

    interface: AudioInterface
    alsa_device: str | None = Field(default=None, min_length=1)
    mixer_control: str | None = Field(default=None, min_length=1)
    mixer_card: str | None = Field(default=None, min_length=1)
    sample_rate: int = Field(default=48000, ge=8000, le=192000)
    channels: int = Field(default=2, ge=1, le=8)
    period_frames: int = Field(gt=0)
    buffer_frames: int = Field(gt=0)
    output_latency_ms: float = Field(ge=0)

    @field_validator("output_latency_ms")
    @classmethod
    def _finite_latency(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of milliseconds")
        return value


class AmplifierConfig(_Strict):
    """How the agent powers the amplifier; cooldown_ms is how long it stays on after audio."""

    kind: AmplifierKind
    gpio_pin: int | None = Field(default=None, ge=0)
    active_high: bool = True
    warmup_ms: int = Field(default=0, ge=0)
    cooldown_ms: int = Field(default=0, ge=0)


class StatusLedConfig(_Strict):
    """A GPIO-driven status LED."""

    gpio_pin: int = Field(ge=0)
    active_high: bool = True


class VolumeConfig(_Strict):
    """Volume levels in percent; emergency may exceed max, which caps ordinary playback."""

    default: int = Field(ge=0, le=100)
    emergency: int = Field(ge=0, le=100)
    max: int = Field(ge=0, le=100)


class ModemConfig(_Strict):
    """How signal strength is read: ModemManager (mmcli) by index, or AT commands on a tty."""

    kind: ModemKind = "none"
    device: str | None = Field(default=None, min_length=1)
    modem_index: int | None = Field(default=None, ge=0)


class NetworkConfig(_Strict):
    """Network interfaces the agent reports on."""

    wifi_interface: str | None = Field(default=None, min_length=1)
    modem: ModemConfig = ModemConfig()


DisplayKind = Literal["hdmi", "led"]
DEFAULT_DISPLAY_PORT = 8090


class DisplayConfig(_Strict):
    """A screen beside (or instead of) the horns: an e-board (HDMI screen or LED panel).

    The agent serves the board's page on 127.0.0.1:port; Chromium in kiosk mode shows it
    (deploy/loa-eboard-kiosk.service). An LED panel controller takes the same HDMI picture.
    """

    kind: DisplayKind
    port: int = Field(default=DEFAULT_DISPLAY_PORT, ge=1024, le=65535)
    orientation: Literal["landscape", "portrait"] = "landscape"


class CaptureConfig(_Strict):
    """The microphone on the pole that hears the horns, for the acoustic self-test (issue 17).

    "alsa": a USB or I2S microphone read with arecord from `alsa_device`; "sim": the
    simulated cluster's microphone, which hears the sink's output through the acoustic path
    in the agent's data dir (sim_acoustic.json, audio.acoustic.AcousticPath).
    """

    kind: Literal["alsa", "sim"]
    alsa_device: str | None = Field(default=None, min_length=1)
    sample_rate: int = Field(default=48000, ge=32000, le=192000)


class FuelGaugeConfig(_Strict):
    """An I2C fuel gauge (MAX17040/17043/17048, as on the Geekworm X728) for the battery level."""

    chip: Literal["max17040"]
    bus: int = Field(default=1, ge=0, le=99)  # /dev/i2c-<bus>
    address: int = Field(default=0x36, ge=0)  # 7-bit; checked against 0x03-0x77 below
    # On battery below this state of charge (%) is "battery_low".
    low_pct: int = Field(default=20, ge=1, le=99)


class PowerConfig(_Strict):
    """Where the agent reads mains present / on battery / battery low (issue 17).

    "gpio": inputs from a UPS HAT or a relay on the mains side (`mains_pin` reads active
    while mains is present, `battery_low_pin` while the battery is nearly empty); "sim":
    the simulated cluster's state file in the agent's data dir (sim_power.json). A gpio
    profile may add a `fuel_gauge` read over I2C for the battery level.
    """

    kind: Literal["gpio", "sim"]
    mains_pin: int | None = Field(default=None, ge=0)
    battery_low_pin: int | None = Field(default=None, ge=0)
    active_high: bool = True
    # The highest volume (%) while on battery: a smaller load keeps the horns up for longer.
    battery_volume_max: int | None = Field(default=None, ge=0, le=100)
    poll_s: float = Field(default=2.0, ge=0.2, le=60)
    fuel_gauge: FuelGaugeConfig | None = None


class FirmwareProfile(_Strict):
    """One supported hardware build: board, audio path, amplifier, LED, volume, network."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = Field(min_length=1)
    board: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    simulated: bool = False
    gpio_chip: str | None = Field(default=None, min_length=1)
    # Extra pins a HAT occupies beyond I2S (e.g. I2C 2/3 for a DAC configured over I2C).
    reserved_gpio_pins: tuple[Annotated[int, Field(ge=0)], ...] = ()
    audio: AudioConfig
    amplifier: AmplifierConfig
    status_led: StatusLedConfig | None = None
    volume: VolumeConfig
    thermal_zone: str | None = Field(default=None, min_length=1)
    network: NetworkConfig = NetworkConfig()
    display: DisplayConfig | None = None
    capture: CaptureConfig | None = None
    power: PowerConfig | None = None

    @property
    def has_display(self) -> bool:
        """True for an e-board (a screen, with or without horns)."""
        return self.display is not None

    @property
    def is_raspberry_pi(self) -> bool:
        """True for Raspberry Pi boards, whose header limits the usable GPIO numbers."""
        return self.board.startswith("raspberrypi")

    @model_validator(mode="after")
    def _cross_field_rules(self) -> FirmwareProfile:
        problems = [
            *_audio_problems(self),
            *_amplifier_problems(self.amplifier),
            *_volume_problems(self.volume),
            *_modem_problems(self.network.modem),
            *_power_problems(self.power),
            *_pin_problems(self),
        ]
        if self.thermal_zone is not None and not self.thermal_zone.startswith("/"):
            problems.append(("thermal_zone", "must be an absolute path"))
        if problems:
            raise ProfileProblems(problems)
        return self


class ProfileProblems(ValueError):
    """Cross-field problems of a profile, each as (dotted field path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))
        self.problems = problems


Problems = list[tuple[str, str]]


def _audio_problems(profile: FirmwareProfile) -> Problems:
    audio = profile.audio
    problems: Problems = []
    if audio.interface == "file":
        if audio.alsa_device is not None:
            problems.append(("audio.alsa_device", "must be null when audio.interface is 'file'"))
        if not profile.simulated:
            problems.append(("audio.interface", "'file' is only allowed when simulated is true"))
    elif audio.alsa_device is None:
        problems.append(
            ("audio.alsa_device", f"required when audio.interface is '{audio.interface}'")
        )
    if profile.simulated and audio.interface != "file":
        problems.append(("audio.interface", "must be 'file' when simulated is true"))
    if audio.mixer_control is not None and audio.mixer_card is None:
        problems.append(("audio.mixer_card", "required when audio.mixer_control is set"))
    if audio.buffer_frames < 2 * audio.period_frames:
        problems.append(
            (
                "audio.buffer_frames",
                f"must hold at least two periods ({2 * audio.period_frames} frames)",
            )
        )
    return problems


def _amplifier_problems(amplifier: AmplifierConfig) -> Problems:
    if amplifier.kind != "none" and amplifier.gpio_pin is None:
        return [("amplifier.gpio_pin", f"required when amplifier.kind is '{amplifier.kind}'")]
    if amplifier.kind == "none" and amplifier.gpio_pin is not None:
        return [("amplifier.gpio_pin", "must be null when amplifier.kind is 'none'")]
    return []


def _volume_problems(volume: VolumeConfig) -> Problems:
    if volume.default > volume.max:
        return [("volume.default", f"must not exceed volume.max ({volume.max})")]
    return []


def _modem_problems(modem: ModemConfig) -> Problems:
    problems: Problems = []
    if modem.kind == "mmcli" and modem.modem_index is None:
        problems.append(
            ("network.modem.modem_index", "required when network.modem.kind is 'mmcli'")
        )
    if modem.kind == "at" and modem.device is None:
        problems.append(("network.modem.device", "required when network.modem.kind is 'at'"))
    if modem.kind == "none" and (modem.device is not None or modem.modem_index is not None):
        problems.append(
            ("network.modem", "device and modem_index must be null when kind is 'none'")
        )
    return problems


def _power_problems(power: PowerConfig | None) -> Problems:
    if power is None:
        return []
    if power.kind == "gpio" and power.mains_pin is None:
        return [("power.mains_pin", "required when power.kind is 'gpio'")]
    if power.kind == "sim" and (power.mains_pin is not None or power.battery_low_pin is not None):
        return [("power", "mains_pin and battery_low_pin must be null when kind is 'sim'")]
    gauge = power.fuel_gauge
    if gauge is None:
        return []
    if power.kind == "sim":
        return [("power.fuel_gauge", "must be null when power.kind is 'sim' (use sim_power.json)")]
    if not I2C_ADDRESS_MIN <= gauge.address <= I2C_ADDRESS_MAX:
        return [
            (
                "power.fuel_gauge.address",
                f"{gauge.address:#04x} is outside the 7-bit I2C address range 0x03-0x77",
            )
        ]
    return []


def _used_pins(profile: FirmwareProfile) -> list[tuple[str, int]]:
    """Every GPIO the agent drives or reads, with the field that names it."""
    used: list[tuple[str, int]] = []
    if profile.amplifier.gpio_pin is not None:
        used.append(("amplifier.gpio_pin", profile.amplifier.gpio_pin))
    if profile.status_led is not None:
        used.append(("status_led.gpio_pin", profile.status_led.gpio_pin))
    power = profile.power
    if power is not None and power.kind == "gpio":
        if power.mains_pin is not None:
            used.append(("power.mains_pin", power.mains_pin))
        if power.battery_low_pin is not None:
            used.append(("power.battery_low_pin", power.battery_low_pin))
    return used


def _pin_problems(profile: FirmwareProfile) -> Problems:
    problems: Problems = []
    used = _used_pins(profile)
    if used and not profile.simulated and profile.gpio_chip is None:
        problems.append(("gpio_chip", "required when the profile drives GPIO pins"))
    reserved = dict.fromkeys(profile.reserved_gpio_pins, "reserved_gpio_pins")
    if profile.audio.interface == "i2s":
        reserved.update(dict.fromkeys(sorted(I2S_GPIO_PINS), "I2S audio (GPIO 18-21)"))
    gauge = profile.power.fuel_gauge if profile.power is not None else None
    if gauge is not None and gauge.bus == 1 and profile.is_raspberry_pi:
        i2c = "the fuel gauge's I2C bus 1 (GPIO 2-3)"
        reserved.update(dict.fromkeys(sorted(I2C1_GPIO_PINS), i2c))
    pins = [("reserved_gpio_pins", pin) for pin in profile.reserved_gpio_pins] + used
    if profile.is_raspberry_pi:
        problems.extend(
            (field, f"GPIO {pin} is outside the Raspberry Pi header range 0-{PI_HEADER_GPIO_MAX}")
            for field, pin in pins
            if pin > PI_HEADER_GPIO_MAX
        )
    seen: dict[int, str] = {}
    for field, pin in used:
        if pin in reserved:
            problems.append((field, f"GPIO {pin} collides with {reserved[pin]}"))
        elif pin in seen:
            problems.append((field, f"GPIO {pin} is already used by {seen[pin]}"))
        seen.setdefault(pin, field)
    return problems
