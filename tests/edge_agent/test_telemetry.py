"""Health figures: parsers on real output formats, the real machine, the simulator."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edge_agent.telemetry import (
    SimulatedSensors,
    SystemSensors,
    parse_mmcli_signal,
    parse_proc_net_wireless,
    read_cpu_temp,
)
from firmware_profiles import FirmwareProfile, load_profile
from protocol import Telemetry

WIRELESS = """\
Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE
 face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22
 wlan0: 0000   54.  -56.  -256        0      0      0      0      0        0
  wlp2s0: 0000   40.  200.  0        0      0      0      0      0        0
"""

MMCLI = """\
modem.dbus-path                                 : /org/freedesktop/ModemManager1/Modem/0
modem.generic.manufacturer                      : QUALCOMM INCORPORATED
modem.generic.state                             : connected
modem.generic.signal-quality.value              : 50
modem.generic.signal-quality.recent             : yes
modem.generic.access-technologies.value[1]      : lte
"""


def test_proc_net_wireless() -> None:
    assert parse_proc_net_wireless(WIRELESS, "wlan0") == -56.0
    assert parse_proc_net_wireless(WIRELESS, "wlp2s0") == -56.0  # unsigned: 200 - 256
    assert parse_proc_net_wireless(WIRELESS, "wlan1") is None
    assert parse_proc_net_wireless(" wlan0: 0000 garbage", "wlan0") is None
    assert parse_proc_net_wireless("", "wlan0") is None


def test_mmcli_signal() -> None:
    assert parse_mmcli_signal(MMCLI) == -82.0  # 50 % of the CSQ scale -113..-51 dBm
    with_rssi = MMCLI + "modem.signal.lte.rssi : -65.00\nmodem.signal.lte.rsrp : -95.00\n"
    assert parse_mmcli_signal(with_rssi) == -65.0
    unknown = MMCLI.replace(": 50", ": --")
    assert parse_mmcli_signal(unknown) is None
    assert parse_mmcli_signal("error: couldn't find modem") is None


def test_cpu_temperature_file(tmp_path: Path) -> None:
    zone = tmp_path / "temp"
    zone.write_text("48312\n")
    assert read_cpu_temp(zone) == 48.3
    zone.write_text("garbage")
    assert read_cpu_temp(zone) is None
    zone.write_text("999999")  # 999 °C: a broken sensor, not a reading
    assert read_cpu_temp(zone) is None
    assert read_cpu_temp(tmp_path / "missing") is None


def _pi_profile(tmp_path: Path, **network: object) -> FirmwareProfile:
    data = load_profile("rpi4-usb-pa").model_dump()
    data["thermal_zone"] = str(tmp_path / "thermal_temp")
    data["network"] = network
    return FirmwareProfile.model_validate(data)


def _fake_mmcli(tmp_path: Path, output: str, code: int = 0) -> Path:
    """A stand-in for ModemManager's CLI (no modem here): prints what mmcli prints."""
    (tmp_path / "mmcli.out").write_text(output)
    script = tmp_path / "mmcli"
    script.write_text(
        f'#!/bin/sh\n[ "$1 $2 $3" = "-m 0 --output-keyvalue" ] || exit 9\n'
        f'cat "{tmp_path / "mmcli.out"}"\nexit {code}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_system_sensors_read_this_machine(tmp_path: Path) -> None:
    (tmp_path / "thermal_temp").write_text("51000\n")
    (tmp_path / "wireless").write_text(WIRELESS)
    profile = _pi_profile(
        tmp_path, wifi_interface="wlan0", modem={"kind": "mmcli", "modem_index": 0}
    )
    sensors = SystemSensors(
        profile=profile,
        data_dir=tmp_path,
        wireless_file=tmp_path / "wireless",
        mmcli=str(_fake_mmcli(tmp_path, MMCLI)),
    )
    sample = sensors.sample()
    assert sample is not None
    assert sample.uptime_s > 0 and sample.load_1m >= 0
    assert 0 < sample.mem_used_pct < 100 and 0 < sample.disk_used_pct < 100
    assert sample.disk_free_mb > 0
    assert sample.cpu_temp_c == 51.0
    assert (sample.signal_dbm, sample.signal_source) == (-82.0, "modem")
    Telemetry(**vars(sample), agent_version="0", firmware_profile=profile.name)


def test_system_sensors_fall_back_and_never_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "wireless").write_text(WIRELESS)
    profile = _pi_profile(
        tmp_path, wifi_interface="wlan0", modem={"kind": "mmcli", "modem_index": 0}
    )
    sensors = SystemSensors(
        profile=profile,
        data_dir=tmp_path,
        wireless_file=tmp_path / "wireless",
        mmcli=str(tmp_path / "no-such-mmcli"),
    )
    first, second = sensors.sample(), sensors.sample()
    assert first is not None and second is not None
    assert first.cpu_temp_c is None  # no thermal file
    assert (first.signal_dbm, first.signal_source) == (-56.0, "wifi")  # modem gone: Wi-Fi
    assert caplog.text.count("cannot run mmcli") == 1  # warned once, not every sample

    failing = SystemSensors(
        profile=profile,
        data_dir=tmp_path,
        wireless_file=tmp_path / "missing-wireless",
        mmcli=str(_fake_mmcli(tmp_path, "error: no modem\n", code=1)),
    )
    sample = failing.sample()
    assert sample is not None and sample.signal_dbm is None and sample.signal_source is None

    gone = SystemSensors(profile=profile, data_dir=tmp_path / "not-there")
    assert gone.sample() is None  # the data partition cannot be read: no sample, no exception


def test_simulated_sensors_are_plausible_and_seeded() -> None:
    ticks = iter(range(0, 10_000, 30))
    a = SimulatedSensors(device_id="sim-0001", clock=lambda: float(next(ticks)))
    b = SimulatedSensors(device_id="sim-0001", clock=lambda: 0.0)
    c = SimulatedSensors(device_id="sim-0002", clock=lambda: 0.0)
    samples = [a.sample() for _ in range(200)]
    assert b.sample().cpu_temp_c == SimulatedSensors(device_id="sim-0001").sample().cpu_temp_c
    assert b.sample() != c.sample()
    temps = [s.cpu_temp_c for s in samples if s.cpu_temp_c is not None]
    signals = [s.signal_dbm for s in samples if s.signal_dbm is not None]
    assert 40 <= sum(temps) / len(temps) <= 50 and len(set(temps)) > 10
    assert -80 <= sum(signals) / len(signals) <= -60 and len(set(signals)) > 10
    assert samples[-1].uptime_s > samples[0].uptime_s
    for s in samples:
        Telemetry(**vars(s), agent_version="0", firmware_profile="sim")
