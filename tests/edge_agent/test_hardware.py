"""The hardware seam: the simulator records, the real one explains what is missing."""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from edge_agent.hardware import (
    GpioHardware,
    HardwareError,
    SimHardware,
    make_hardware,
    write_tone_wav,
)
from firmware_profiles import FirmwareProfile, load_profile


def test_sim_hardware_records_calls_with_their_time() -> None:
    ticks = iter([1.0, 2.0, 3.5, 4.0])
    hw = SimHardware(clock=lambda: next(ticks))
    hw.set_amplifier(True)
    hw.set_volume(40)
    hw.play_test_tone(2.5)
    hw.close()
    assert [tuple(c) for c in hw.calls] == [
        (1.0, "amplifier", 1.0),
        (2.0, "volume", 40.0),
        (3.5, "test_tone", 2.5),
        (4.0, "close", 0.0),
    ]
    assert hw.volume == 40 and hw.amplifier_on is False
    assert hw.actions("volume") == [40.0]


def test_make_hardware_picks_the_simulator_for_sim() -> None:
    assert isinstance(make_hardware(profile=load_profile("sim"), sim=False), SimHardware)
    assert isinstance(make_hardware(profile=load_profile("rpi4-usb-pa"), sim=True), SimHardware)


def test_gpio_hardware_without_gpiod_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)  # makes `import gpiod` fail
    with pytest.raises(HardwareError, match=r"apt-get install -y python3-libgpiod"):
        GpioHardware(profile=load_profile("rpi4-usb-pa"))
    with pytest.raises(HardwareError, match=r"python3-libgpiod"):
        make_hardware(profile=load_profile("rpi4-usb-pa"), sim=False)


def _no_amplifier(name: str) -> FirmwareProfile:
    data = load_profile(name).model_dump()
    data["amplifier"] = {"kind": "none"}
    data["status_led"] = None
    return FirmwareProfile.model_validate(data)


def test_gpio_hardware_volume_needs_amixer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no amixer, no aplay
    hw = GpioHardware(profile=_no_amplifier("rpi4-usb-pa"))
    with pytest.raises(HardwareError, match=r"amixer is not installed: sudo apt-get install"):
        hw.set_volume(50)
    with pytest.raises(HardwareError, match=r"aplay is not installed"):
        hw.play_test_tone(0.2)
    hw.set_amplifier(True)  # no amplifier line in this profile: nothing to drive
    hw.close()


def test_gpio_hardware_without_a_mixer_keeps_a_software_volume() -> None:
    hw = GpioHardware(profile=_no_amplifier("rpizero2w-i2s-amp"))
    hw.set_volume(33)
    assert hw.software_volume == 33


def test_the_test_tone_is_a_clean_1khz_sine(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    write_tone_wav(path, seconds=0.5, sample_rate=48000, channels=2)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 48000, 2)
        assert w.getnframes() == 24000
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    left = samples[:, 0].astype(np.float64)
    assert np.array_equal(samples[:, 0], samples[:, 1])
    spectrum = np.abs(np.fft.rfft(left))
    peak_hz = np.argmax(spectrum) * 48000 / len(left)
    assert abs(peak_hz - 1000) < 5
    assert 0.2 < np.max(np.abs(left)) / 32767 < 0.3  # about -12 dBFS
    assert abs(left[0]) < 50 and abs(left[-1]) < 50  # faded in and out: no click
