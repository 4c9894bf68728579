"""Firmware profiles: shipped files load, bad files fail with messages that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from firmware_profiles import (
    I2S_GPIO_PINS,
    FirmwareProfile,
    ProfileError,
    available_profiles,
    load_profile,
)

SHIPPED = [
    "eboard-rpi4-hdmi",
    "eboard-rpi4-led-pa",
    "eboard-sim",
    "rpi3bplus-hifiberry-dac",
    "rpi4-usb-pa",
    "rpizero2w-i2s-amp",
    "sim",
]


def _shipped_data(name: str) -> dict[str, Any]:
    """The parsed YAML of a shipped profile, as a mutable dict to break on purpose."""
    path = Path(__file__).parents[2] / "firmware_profiles" / "profiles" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _write(tmp_path: Path, data: dict[str, Any] | str, name: str = "custom.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def test_available_profiles_lists_every_shipped_file() -> None:
    assert available_profiles() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads_and_is_named_after_its_file(name: str) -> None:
    profile = load_profile(name)
    assert isinstance(profile, FirmwareProfile)
    assert profile.name == name
    assert profile.audio.sample_rate == 48000
    assert profile.volume.default <= profile.volume.max


def test_real_profiles_drive_their_amplifier_and_sim_has_no_gpio() -> None:
    pa = load_profile("rpi4-usb-pa")
    assert (pa.amplifier.kind, pa.amplifier.gpio_pin, pa.amplifier.warmup_ms) == ("relay", 17, 1500)
    assert pa.gpio_chip == "gpiochip0"
    zero = load_profile("rpizero2w-i2s-amp")
    assert zero.amplifier.kind == "enable_pin"
    assert zero.audio.interface == "i2s"
    sim = load_profile("sim")
    assert sim.simulated
    assert sim.amplifier.kind == "none"
    assert sim.audio.output_latency_ms == 0
    assert sim.status_led is None


def test_i2s_profiles_keep_clear_of_the_i2s_pins() -> None:
    for name in SHIPPED:
        profile = load_profile(name)
        if profile.audio.interface != "i2s":
            continue
        assert profile.amplifier.gpio_pin not in I2S_GPIO_PINS
        if profile.status_led is not None:
            assert profile.status_led.gpio_pin not in I2S_GPIO_PINS


def test_load_by_path(tmp_path: Path) -> None:
    data = _shipped_data("rpi4-usb-pa")
    data["name"] = "rpi4-custom"
    profile = load_profile(str(_write(tmp_path, data, "site-profile.yaml")))
    assert profile.name == "rpi4-custom"


def test_unknown_name_lists_the_available_profiles() -> None:
    with pytest.raises(ProfileError) as excinfo:
        load_profile("rpi9")
    assert str(excinfo.value) == (
        "unknown firmware profile 'rpi9'; available: " + ", ".join(SHIPPED)
    )


def test_missing_file_path() -> None:
    with pytest.raises(ProfileError, match=r"file '/nonexistent/x\.yaml' does not exist"):
        load_profile("/nonexistent/x.yaml")


def test_relay_without_pin_names_the_field(tmp_path: Path) -> None:
    data = _shipped_data("rpi4-usb-pa")
    data["amplifier"]["gpio_pin"] = None
    path = _write(tmp_path, data)
    with pytest.raises(ProfileError) as excinfo:
        load_profile(str(path))
    assert str(excinfo.value) == (
        f"firmware profile '{path}': amplifier.gpio_pin: required when amplifier.kind is 'relay'"
    )


@pytest.mark.parametrize(
    ("section", "field", "value", "expected"),
    [
        ("volume", "default", 95, "volume.default: must not exceed volume.max (90)"),
        ("volume", "emergency", 101, "volume.emergency: Input should be less than or equal"),
        ("audio", "output_latency_ms", -1.0, "audio.output_latency_ms: Input should be greater"),
        ("audio", "samplerate", 44100, "audio.samplerate: Extra inputs are not permitted"),
        ("audio", "buffer_frames", 512, "audio.buffer_frames: must hold at least two periods"),
        ("audio", "alsa_device", None, "audio.alsa_device: required when audio.interface is 'usb'"),
        ("amplifier", "kind", "solenoid", "amplifier.kind: Input should be 'relay'"),
        ("amplifier", "gpio_pin", 40, "amplifier.gpio_pin: GPIO 40 is outside the Raspberry Pi"),
        ("amplifier", "warmup_ms", -5, "amplifier.warmup_ms: Input should be greater than or"),
        ("status_led", "gpio_pin", 17, "status_led.gpio_pin: GPIO 17 is already used by"),
        ("network", "modem", {"kind": "at"}, "network.modem.device: required when"),
    ],
)
def test_bad_field_messages_name_the_field(
    tmp_path: Path, section: str, field: str, value: object, expected: str
) -> None:
    data = _shipped_data("rpi4-usb-pa")
    data[section][field] = value
    with pytest.raises(ProfileError) as excinfo:
        load_profile(str(_write(tmp_path, data)))
    assert expected in str(excinfo.value)


def test_missing_gpio_chip_and_relative_thermal_zone_are_both_reported(tmp_path: Path) -> None:
    data = _shipped_data("rpi4-usb-pa")
    del data["gpio_chip"]
    data["thermal_zone"] = "thermal_zone0/temp"
    with pytest.raises(ProfileError) as excinfo:
        load_profile(str(_write(tmp_path, data)))
    message = str(excinfo.value)
    assert "gpio_chip: required when the profile drives GPIO pins" in message
    assert "thermal_zone: must be an absolute path" in message


@pytest.mark.parametrize("pin", sorted(I2S_GPIO_PINS))
def test_relay_on_an_i2s_pin_is_rejected(tmp_path: Path, pin: int) -> None:
    data = _shipped_data("rpi3bplus-hifiberry-dac")
    data["amplifier"]["gpio_pin"] = pin
    with pytest.raises(ProfileError) as excinfo:
        load_profile(str(_write(tmp_path, data)))
    assert f"amplifier.gpio_pin: GPIO {pin} collides with I2S audio (GPIO 18-21)" in str(
        excinfo.value
    )


def test_led_on_a_reserved_i2c_pin_is_rejected(tmp_path: Path) -> None:
    data = _shipped_data("rpi3bplus-hifiberry-dac")
    data["status_led"]["gpio_pin"] = 3
    with pytest.raises(ProfileError, match=r"status_led\.gpio_pin: GPIO 3 collides with reserved"):
        load_profile(str(_write(tmp_path, data)))


def test_i2s_pin_is_fine_for_a_usb_audio_board(tmp_path: Path) -> None:
    data = _shipped_data("rpi4-usb-pa")
    data["amplifier"]["gpio_pin"] = 18
    assert load_profile(str(_write(tmp_path, data))).amplifier.gpio_pin == 18


def test_file_sink_requires_simulated(tmp_path: Path) -> None:
    data = _shipped_data("sim")
    data["simulated"] = False
    with pytest.raises(ProfileError, match=r"audio\.interface: 'file' is only allowed when"):
        load_profile(str(_write(tmp_path, data)))


def test_yaml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    text = "name: broken\ndescription: x\naudio:\n  interface: usb\n   channels: 2\n"
    with pytest.raises(ProfileError) as excinfo:
        load_profile(str(_write(tmp_path, text)))
    assert "YAML syntax error at line 5" in str(excinfo.value)


def test_duplicate_key_is_a_syntax_error_with_its_line(tmp_path: Path) -> None:
    text = "name: a\nboard: raspberrypi4\nname: b\n"
    with pytest.raises(ProfileError, match=r"line 3, column 1: duplicate key 'name'"):
        load_profile(str(_write(tmp_path, text)))


def test_non_mapping_document_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="must be a YAML mapping"):
        load_profile(str(_write(tmp_path, "- just\n- a list\n")))


def test_profile_is_frozen() -> None:
    profile = load_profile("sim")
    with pytest.raises(ValueError, match="frozen"):
        profile.volume.default = 10  # type: ignore[misc]


def test_sim_profiles_read_power_from_their_state_file() -> None:
    for name in ("sim", "eboard-sim"):
        power = load_profile(name).power
        assert power is not None and (power.kind, power.battery_volume_max) == ("sim", 40)
    assert load_profile("rpi4-usb-pa").power is None  # no UPS HAT in the real builds


@pytest.mark.parametrize(
    ("power", "expected"),
    [
        ({"kind": "gpio"}, "power.mains_pin: required when power.kind is 'gpio'"),
        ({"kind": "sim", "mains_pin": 6}, "power: mains_pin and battery_low_pin must be null"),
        ({"kind": "gpio", "mains_pin": 17}, "power.mains_pin: GPIO 17 is already used by"),
        (
            {"kind": "gpio", "mains_pin": 6, "battery_low_pin": 6},
            "power.battery_low_pin: GPIO 6 is already used by power.mains_pin",
        ),
        ({"kind": "gpio", "mains_pin": 30}, "power.mains_pin: GPIO 30 is outside the Raspberry"),
        ({"kind": "gpio", "mains_pin": 6, "battery_volume_max": 101}, "less than or equal to 100"),
    ],
)
def test_bad_power_sections_name_the_field(
    tmp_path: Path, power: dict[str, Any], expected: str
) -> None:
    data = _shipped_data("rpi4-usb-pa")
    data["power"] = power
    with pytest.raises(ProfileError) as excinfo:
        load_profile(str(_write(tmp_path, data)))
    assert expected in str(excinfo.value)


def test_power_pins_keep_clear_of_i2s_and_need_a_gpio_chip(tmp_path: Path) -> None:
    data = _shipped_data("rpi3bplus-hifiberry-dac")
    data["power"] = {"kind": "gpio", "mains_pin": 19}
    with pytest.raises(ProfileError, match=r"power\.mains_pin: GPIO 19 collides with I2S"):
        load_profile(str(_write(tmp_path, data)))
    data = _shipped_data("rpi4-usb-pa")
    data["amplifier"] = {"kind": "none"}
    data["status_led"] = None
    data["gpio_chip"] = None
    data["power"] = {"kind": "gpio", "mains_pin": 6, "active_high": False}
    with pytest.raises(ProfileError, match="gpio_chip: required when the profile drives GPIO"):
        load_profile(str(_write(tmp_path, data)))
    data["gpio_chip"] = "gpiochip0"
    power = load_profile(str(_write(tmp_path, data))).power
    assert power is not None and (power.mains_pin, power.active_high) == (6, False)


_GAUGE = {"chip": "max17040"}


@pytest.mark.parametrize(
    ("power", "expected"),
    [
        ({"kind": "sim", "fuel_gauge": _GAUGE}, "power.fuel_gauge: must be null when power.kind"),
        (
            {"kind": "gpio", "mains_pin": 6, "fuel_gauge": {**_GAUGE, "address": 0x78}},
            "power.fuel_gauge.address: 0x78 is outside the 7-bit I2C address range 0x03-0x77",
        ),
        (
            {"kind": "gpio", "mains_pin": 6, "fuel_gauge": {**_GAUGE, "address": 2}},
            "power.fuel_gauge.address: 0x02 is outside",
        ),
        ({"kind": "gpio", "mains_pin": 6, "fuel_gauge": {"chip": "bq27441"}}, "max17040"),
        ({"kind": "gpio", "mains_pin": 6, "fuel_gauge": {**_GAUGE, "low_pct": 0}}, "low_pct"),
        ({"kind": "gpio", "mains_pin": 6, "fuel_gauge": {**_GAUGE, "low_pct": 100}}, "low_pct"),
        ({"kind": "gpio", "mains_pin": 6, "fuel_gauge": {**_GAUGE, "bus": -1}}, "bus"),
        (
            {"kind": "gpio", "mains_pin": 3, "fuel_gauge": _GAUGE},
            "power.mains_pin: GPIO 3 collides with the fuel gauge's I2C bus 1",
        ),
    ],
)
def test_bad_fuel_gauges_name_the_field(
    tmp_path: Path, power: dict[str, Any], expected: str
) -> None:
    data = _shipped_data("rpi4-usb-pa")
    data["power"] = power
    with pytest.raises(ProfileError) as excinfo:
        load_profile(str(_write(tmp_path, data)))
    assert expected in str(excinfo.value)


def test_an_x728_profile_reads_its_fuel_gauge_with_the_defaults(tmp_path: Path) -> None:
    data = _shipped_data("rpi4-usb-pa")
    text = yaml.safe_dump(data) + (
        "power:\n  kind: gpio\n  mains_pin: 6\n  active_high: false\n"
        "  fuel_gauge: {chip: max17040, address: 0x36}\n"
    )
    gauge = load_profile(str(_write(tmp_path, text))).power
    assert gauge is not None and gauge.fuel_gauge is not None
    assert (gauge.fuel_gauge.bus, gauge.fuel_gauge.address, gauge.fuel_gauge.low_pct) == (
        1,
        0x36,
        20,
    )
