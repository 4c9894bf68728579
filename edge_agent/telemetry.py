"""Health samples: system figures, SoC temperature and radio signal, all best effort.

Reading them touches files and runs mmcli, so the agent calls `sample()` through
asyncio.to_thread. Nothing here raises: a figure that cannot be read is None.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from firmware_profiles import FirmwareProfile

log = logging.getLogger(__name__)

SignalSource = Literal["wifi", "modem", "wired"]
PROC_NET_WIRELESS = Path("/proc/net/wireless")
MIB = 1024 * 1024
# The CSQ scale ModemManager's signal quality is derived from: 0 % = -113 dBm, 100 % = -51 dBm.
CSQ_MIN_DBM, CSQ_SPAN_DB = -113.0, 62.0


@dataclass(frozen=True)
class HealthSample:
    """One reading of the device's health (the variable part of a Telemetry message)."""

    uptime_s: float
    load_1m: float
    mem_used_pct: float
    disk_free_mb: float
    disk_used_pct: float
    cpu_temp_c: float | None = None
    signal_dbm: float | None = None
    signal_source: SignalSource | None = None


class Sensors(Protocol):
    """Where health samples come from."""

    def sample(self) -> HealthSample | None:
        """A fresh sample, or None when even the basic figures cannot be read."""


def read_cpu_temp(path: Path) -> float | None:
    """Degrees Celsius from a Linux thermal zone file (millidegrees), or None."""
    try:
        value = int(path.read_text(encoding="ascii").strip()) / 1000.0
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return round(value, 1) if -60 <= value <= 150 else None


def parse_proc_net_wireless(text: str, interface: str) -> float | None:
    """The signal level in dBm of `interface` from /proc/net/wireless text, or None."""
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep or name.strip() != interface:
            continue
        fields = rest.split()
        if len(fields) < 3:
            return None
        try:
            level = float(fields[2].rstrip("."))
        except ValueError:
            return None
        if level > 0:  # drivers without dBm support report level + 256 as unsigned
            level -= 256
        return level if -150 <= level <= 0 else None
    return None


def parse_mmcli_signal(text: str) -> float | None:
    """Signal in dBm from `mmcli -m N --output-keyvalue`: an RSSI if present, else quality %."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    for key, value in values.items():
        if key.startswith("modem.signal.") and key.endswith(".rssi"):
            dbm = _number(value)
            if dbm is not None and -150 <= dbm <= 0:
                return dbm
    quality = _number(values.get("modem.generic.signal-quality.value", ""))
    if quality is None or not 0 <= quality <= 100:
        return None
    return round(CSQ_MIN_DBM + quality * CSQ_SPAN_DB / 100, 1)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # mmcli prints "--" for unknown values


class SystemSensors:
    """Reads the real machine: psutil, the thermal zone, /proc/net/wireless, mmcli."""

    def __init__(
        self,
        *,
        profile: FirmwareProfile,
        data_dir: Path,
        clock: Callable[[], float] = time.time,
        wireless_file: Path = PROC_NET_WIRELESS,
        mmcli: str = "mmcli",
    ) -> None:
        self.profile = profile
        self.data_dir = data_dir
        self._clock = clock
        self._wireless_file = wireless_file
        self._mmcli = mmcli
        self._warned: set[str] = set()

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def sample(self) -> HealthSample | None:
        """Read everything; figures that fail are None, basic figures failing gives None."""
        try:
            import psutil  # the "edge" extra; imported here so --sim runs without it
        except ImportError:
            self._warn_once(
                "psutil", "psutil is missing: install the agent with pip install 'loa[edge]'"
            )
            return None
        try:
            disk = psutil.disk_usage(str(self.data_dir))
            uptime = max(0.0, self._clock() - psutil.boot_time())
            load = max(0.0, os.getloadavg()[0])
            mem = psutil.virtual_memory().percent
        except (OSError, RuntimeError) as exc:
            self._warn_once(
                "system",
                "cannot read system figures (%s); no telemetry is sent until they can be read",
                exc,
            )
            return None
        dbm, source = self._signal()
        return HealthSample(
            uptime_s=round(uptime, 1),
            load_1m=round(load, 2),
            mem_used_pct=round(min(100.0, max(0.0, mem)), 1),
            disk_free_mb=round(disk.free / MIB, 1),
            disk_used_pct=round(min(100.0, max(0.0, disk.percent)), 1),
            cpu_temp_c=self._cpu_temp(),
            signal_dbm=dbm,
            signal_source=source if dbm is not None else None,
        )

    def _cpu_temp(self) -> float | None:
        zone = self.profile.thermal_zone
        if zone is None:
            return None
        value = read_cpu_temp(Path(zone))
        if value is None:
            self._warn_once("thermal", "cannot read the CPU temperature from %s", zone)
        return value

    def _signal(self) -> tuple[float | None, SignalSource | None]:
        modem = self.profile.network.modem
        if modem.kind == "mmcli" and modem.modem_index is not None:
            dbm = self._modem_signal(modem.modem_index)
            if dbm is not None:
                return dbm, "modem"
        elif modem.kind == "at":
            # Reading a tty with AT+CSQ would fight ModemManager or pppd for the port.
            self._warn_once(
                "at", "modem signal over AT commands is not read yet (%s)", modem.device
            )
        interface = self.profile.network.wifi_interface
        if interface is not None:
            try:
                text = self._wireless_file.read_text(encoding="ascii", errors="replace")
            except OSError:
                return None, None
            dbm = parse_proc_net_wireless(text, interface)
            if dbm is not None:
                return dbm, "wifi"
        return None, None

    def _modem_signal(self, index: int) -> float | None:
        argv = [self._mmcli, "-m", str(index), "--output-keyvalue"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._warn_once("mmcli", "cannot run mmcli (%s): is ModemManager installed?", exc)
            return None
        if done.returncode != 0:
            self._warn_once("mmcli-rc", "mmcli failed: %s", done.stderr.strip()[:200])
            return None
        return parse_mmcli_signal(done.stdout)


class SimulatedSensors:
    """Plausible, reproducible figures for a simulated device (seeded by its id)."""

    def __init__(self, *, device_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._rng = random.Random(device_id)
        self._clock = clock
        self._started = clock()
        self._uptime_at_start = self._rng.uniform(600, 30 * 86400)
        self._temp_base = 45.0 + self._rng.uniform(-3, 3)
        self._signal_base = -70.0 + self._rng.uniform(-6, 6)
        self._disk_total_mb = 29_000.0
        self._disk_used_mb = self._rng.uniform(3_000, 9_000)

    def sample(self) -> HealthSample:
        """A fresh sample: temperature ~45 °C and signal ~-70 dBm, each with noise."""
        rng = self._rng
        used_pct = 100 * self._disk_used_mb / self._disk_total_mb
        return HealthSample(
            uptime_s=round(self._uptime_at_start + self._clock() - self._started, 1),
            load_1m=round(max(0.0, rng.gauss(0.3, 0.1)), 2),
            mem_used_pct=round(min(95.0, max(5.0, rng.gauss(35, 3))), 1),
            disk_free_mb=round(self._disk_total_mb - self._disk_used_mb, 1),
            disk_used_pct=round(used_pct, 1),
            cpu_temp_c=round(min(85.0, max(20.0, rng.gauss(self._temp_base, 1.5))), 1),
            signal_dbm=round(min(-30.0, max(-110.0, rng.gauss(self._signal_base, 3))), 1),
            signal_source="wifi",
        )


def make_sensors(*, profile: FirmwareProfile, device_id: str, data_dir: Path, sim: bool) -> Sensors:
    """SimulatedSensors for --sim or a simulated profile, else SystemSensors."""
    if sim or profile.simulated:
        return SimulatedSensors(device_id=device_id)
    return SystemSensors(profile=profile, data_dir=data_dir)
