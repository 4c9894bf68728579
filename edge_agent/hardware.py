"""The hardware seam: amplifier relay, mixer volume and test tone, real or simulated.

Every method blocks (GPIO ioctl, amixer, aplay), so async code calls them through
asyncio.to_thread.
"""

from __future__ import annotations

import importlib
import logging
import math
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from firmware_profiles import FirmwareProfile

log = logging.getLogger(__name__)

TONE_HZ = 1000.0
TONE_LEVEL = 0.25  # -12 dBFS: clearly audible through a PA without clipping it
GPIO_CONSUMER = "loa-agent"


class HardwareError(Exception):
    """A hardware action failed or cannot be set up; the message says what to check."""


class Hardware(Protocol):
    """What the agent asks of the cluster's hardware."""

    def set_amplifier(self, on: bool) -> None:
        """Power the amplifier on or off."""

    def set_volume(self, percent: int) -> None:
        """Set the output volume, 0-100 %."""

    def play_test_tone(self, seconds: float) -> None:
        """Play a 1 kHz tone for `seconds` (the amplifier must already be on)."""

    def close(self) -> None:
        """Leave the hardware safe (amplifier off) and release it."""


class HardwareCall(NamedTuple):
    """One action the simulated hardware was asked to perform."""

    at: float  # monotonic clock
    action: str  # "amplifier", "volume", "test_tone", "close"
    value: float


class SimHardware:
    """Hardware for --sim and tests: records every call with the time it was made."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.calls: list[HardwareCall] = []
        self.amplifier_on = False
        self.volume: int | None = None

    def _record(self, action: str, value: float) -> None:
        with self._lock:
            self.calls.append(HardwareCall(self._clock(), action, value))

    def set_amplifier(self, on: bool) -> None:
        """Record the amplifier switching."""
        self.amplifier_on = on
        self._record("amplifier", float(on))

    def set_volume(self, percent: int) -> None:
        """Record the volume."""
        self.volume = percent
        self._record("volume", float(percent))

    def play_test_tone(self, seconds: float) -> None:
        """Record the tone (nothing to wait for: there is no sound card)."""
        self._record("test_tone", seconds)

    def close(self) -> None:
        """Record the release; the amplifier ends off."""
        self.amplifier_on = False
        self._record("close", 0.0)

    def actions(self, action: str) -> list[float]:
        """The values of every recorded call of one kind, in order."""
        with self._lock:
            return [c.value for c in self.calls if c.action == action]


class GpioHardware:
    """A real cluster: amplifier on a GPIO line (libgpiod), volume via amixer, tone via aplay."""

    def __init__(self, *, profile: FirmwareProfile) -> None:
        self.profile = profile
        self._amp: _GpioLine | None = None
        self.software_volume: int | None = None  # used when the card has no mixer control
        amp = profile.amplifier
        if amp.kind != "none" and amp.gpio_pin is not None:
            if profile.gpio_chip is None:
                raise HardwareError(f"profile {profile.name}: gpio_chip is not set")
            self._amp = _GpioLine(
                chip=profile.gpio_chip, pin=amp.gpio_pin, active_high=amp.active_high
            )

    def set_amplifier(self, on: bool) -> None:
        """Drive the amplifier relay / enable pin to its active or inactive level."""
        if self._amp is not None:
            self._amp.set(on)

    def set_volume(self, percent: int) -> None:
        """Set the ALSA mixer control of the profile (or remember it for software volume)."""
        audio = self.profile.audio
        if audio.mixer_control is None or audio.mixer_card is None:
            self.software_volume = percent  # the player scales samples instead
            return
        _run_tool(
            ["amixer", "-q", "-c", audio.mixer_card, "sset", audio.mixer_control, f"{percent}%"],
            package="alsa-utils",
            timeout=5,
        )

    def play_test_tone(self, seconds: float) -> None:
        """Play a 1 kHz tone on the profile's ALSA device with aplay."""
        audio = self.profile.audio
        if audio.alsa_device is None:
            raise HardwareError(f"profile {self.profile.name} has no audio.alsa_device")
        with tempfile.TemporaryDirectory(prefix="loa-tone-") as tmp:
            path = Path(tmp) / "tone.wav"
            write_tone_wav(
                path, seconds=seconds, sample_rate=audio.sample_rate, channels=audio.channels
            )
            _run_tool(
                ["aplay", "-q", "-D", audio.alsa_device, str(path)],
                package="alsa-utils",
                timeout=seconds + 10,
            )

    def close(self) -> None:
        """Switch the amplifier off and release the GPIO line."""
        if self._amp is not None:
            self._amp.close()
            self._amp = None


def write_tone_wav(path: Path, *, seconds: float, sample_rate: int, channels: int) -> None:
    """Write a 16-bit PCM sine tone with 10 ms fades (no clicks through the horns)."""
    frames = max(1, round(seconds * sample_rate))
    fade = min(frames // 2, sample_rate // 100)
    data = bytearray()
    for i in range(frames):
        gain = min(1.0, i / fade, (frames - 1 - i) / fade) if fade else 1.0
        sample = round(
            32767 * TONE_LEVEL * gain * math.sin(2 * math.pi * TONE_HZ * i / sample_rate)
        )
        data += struct.pack("<h", sample) * channels
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(bytes(data))


def _run_tool(argv: list[str], *, package: str, timeout: float) -> None:
    if shutil.which(argv[0]) is None:
        raise HardwareError(f"{argv[0]} is not installed: sudo apt-get install -y {package}")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise HardwareError(f"{argv[0]} did not finish within {timeout:.0f}s") from None
    except OSError as exc:
        raise HardwareError(f"cannot run {argv[0]}: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        raise HardwareError(
            f"{' '.join(argv[:4])} failed ({why[-1] if why else f'exit {done.returncode}'}); "
            "check the profile's ALSA card and mixer names with `aplay -l` and `amixer scontrols`"
        )


def _import_gpiod() -> Any:
    try:
        return importlib.import_module("gpiod")
    except ImportError:
        raise HardwareError(
            "the gpiod Python package is missing: sudo apt-get install -y python3-libgpiod "
            "(or pip install gpiod), needed to switch the amplifier"
        ) from None


class _GpioLine:
    """One output line on the GPIO character device; supports libgpiod 1.x and 2.x bindings."""

    def __init__(self, *, chip: str, pin: int, active_high: bool) -> None:
        gpiod = _import_gpiod()
        self.pin = pin
        path = chip if chip.startswith("/") else f"/dev/{chip}"
        try:
            if hasattr(gpiod, "request_lines"):  # libgpiod 2.x (pip gpiod >= 2)
                from gpiod.line import Direction, Value

                self._active, self._inactive = Value.ACTIVE, Value.INACTIVE
                settings = gpiod.LineSettings(
                    direction=Direction.OUTPUT,
                    output_value=Value.INACTIVE,
                    active_low=not active_high,
                )
                self._request: Any = gpiod.request_lines(
                    path, consumer=GPIO_CONSUMER, config={pin: settings}
                )
                self._v2 = True
            else:  # libgpiod 1.x (Debian/Raspberry Pi OS python3-libgpiod)
                self._active, self._inactive = 1, 0
                line = gpiod.Chip(path).get_line(pin)
                flags = 0 if active_high else gpiod.LINE_REQ_FLAG_ACTIVE_LOW
                line.request(
                    consumer=GPIO_CONSUMER,
                    type=gpiod.LINE_REQ_DIR_OUT,
                    flags=flags,
                    default_vals=[0],
                )
                self._request = line
                self._v2 = False
        except OSError as exc:
            raise HardwareError(
                f"cannot claim GPIO {pin} on {path} ({exc}); is another program using it, and may "
                "this user open the chip (group gpio)?"
            ) from None

    def set(self, on: bool) -> None:
        value = self._active if on else self._inactive
        try:
            if self._v2:
                self._request.set_value(self.pin, value)
            else:
                self._request.set_value(value)
        except OSError as exc:
            raise HardwareError(f"cannot drive GPIO {self.pin}: {exc}") from None

    def close(self) -> None:
        try:
            self.set(False)
        finally:
            self._request.release()


def make_hardware(*, profile: FirmwareProfile, sim: bool) -> Hardware:
    """SimHardware for --sim or a simulated profile, else GpioHardware (may raise HardwareError)."""
    if sim or profile.simulated:
        return SimHardware()
    return GpioHardware(profile=profile)
