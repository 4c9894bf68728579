"""Agent settings: TOML file, LOA_AGENT_* overrides, one-line errors that say what to set."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.settings import SettingsError, load_settings

GOOD_TOML = """
device_id = "bao-ninh-03"
mqtt_host = "mqtt.example.vn"
mqtt_port = 8883
mqtt_password = "from-the-file"
firmware_profile = "rpi4-usb-pa"
keepalive_s = 20
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LOA_AGENT_"):
            monkeypatch.delenv(name)


def test_the_file_is_read_and_the_environment_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(GOOD_TOML)
    monkeypatch.setenv("LOA_AGENT_MQTT_PORT", "1884")
    monkeypatch.setenv("LOA_AGENT_MQTT_PASSWORD", "from-env")
    monkeypatch.chdir(tmp_path)
    s = load_settings(config_file=config)
    assert (s.device_id, s.mqtt_host, s.keepalive_s) == ("bao-ninh-03", "mqtt.example.vn", 20)
    assert s.mqtt_port == 1884
    assert s.mqtt_password.get_secret_value() == "from-env"
    assert "from-env" not in repr(s)
    assert s.profile_name == "rpi4-usb-pa"
    assert s.state_dir == tmp_path / "var" / "agent" / "bao-ninh-03"
    assert (s.telemetry_interval_s, s.min_backoff_s, s.max_backoff_s) == (30, 1.0, 60.0)


def test_environment_alone_is_enough(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOA_AGENT_DEVICE_ID", "cho-ben-01")
    monkeypatch.setenv("LOA_AGENT_MQTT_HOST", "127.0.0.1")
    monkeypatch.setenv("LOA_AGENT_MQTT_PASSWORD", "pw")
    monkeypatch.setenv("LOA_AGENT_DATA_DIR", str(tmp_path / "d"))
    s = load_settings(sim=True)
    assert s.mqtt_port == 1883 and s.keepalive_s == 15
    assert s.profile_name == "sim"  # only --sim gives a default profile
    assert s.state_dir == tmp_path / "d"
    with pytest.raises(
        SettingsError, match=r"firmware_profile is missing.*LOA_AGENT_FIRMWARE_PROFILE"
    ):
        load_settings(sim=False)


def test_a_missing_password_names_the_variable_and_the_key(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(GOOD_TOML.replace('mqtt_password = "from-the-file"', ""))
    with pytest.raises(SettingsError) as err:
        load_settings(config_file=config)
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        f"agent setting mqtt_password is missing: set LOA_AGENT_MQTT_PASSWORD or "
        f"`mqtt_password = ...` in {config}"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('device_id = "Loa-Server"', r"device_id is invalid \(invalid device id 'Loa-Server'"),
        ("mqtt_port = 70000", r"mqtt_port is invalid .*LOA_AGENT_MQTT_PORT"),
        ('keepalive_s = "often"', r"keepalive_s is invalid"),
        ('mqtt_password = ""', r"mqtt_password is invalid \(must not be empty\)"),
        ('mqtt_hots = "typo"', r"unknown agent setting 'mqtt_hots'.*known settings: device_id"),
        ("max_backoff_s = 0.5", r"max_backoff_s \(0.5\) must not be below min_backoff_s"),
    ],
)
def test_invalid_values_are_named(tmp_path: Path, line: str, expected: str) -> None:
    key = line.split("=")[0].strip()
    lines = [x for x in GOOD_TOML.splitlines() if not x.startswith(f"{key} ")]
    config = tmp_path / "agent.toml"
    config.write_text("\n".join([*lines, line]) + "\n")
    with pytest.raises(SettingsError, match=expected):
        load_settings(config_file=config)


def test_unusable_config_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"config file .*nope.toml does not exist"):
        load_settings(config_file=tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text('device_id = "unterminated\n')
    with pytest.raises(SettingsError, match=r"is not valid TOML"):
        load_settings(config_file=broken)
