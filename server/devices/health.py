"""Health warnings a technician acts on, from a device's last reported state."""

from __future__ import annotations

from datetime import datetime, timedelta

from server.devices.models import Device

HOT_C = 75.0  # a Pi throttles at 80-85 °C; warn before that
DISK_FULL_PCT = 90.0
WEAK_SIGNAL_DBM = -105.0
STALE_TELEMETRY = timedelta(minutes=10)
# Devices within earshot must agree to a few ms or villagers hear an echo; 20 ms is audible.
CLOCK_ERROR_MS = 20.0
# Self-test codes that say the horns are not as they were (protocol SELFTEST_CODES): "ok" and
# "baseline" are fine; no_capture, busy and interrupted say nothing about the horns.
SELFTEST_FAILED = frozenset(
    {"silent", "level_low", "high_loss", "distorted", "noisy", "no_signal_input", "failed"}
)
SILENCE_RECENT = timedelta(hours=24)


def health_flags(device: Device, *, now: datetime, published_schedule: int | None) -> list[str]:
    """Warning keys (see the console catalogue 'health.*'), most urgent first."""
    flags: list[str] = []
    if device.revoked_at is not None:
        return ["revoked"]
    telemetry = device.telemetry or {}
    # The device met a broker certificate its CA did not sign: someone on the path (a
    # man in the middle, a wrong DNS entry) presented another one. Security first.
    refusals = telemetry.get("tls_refusals")
    if isinstance(refusals, int) and refusals > 0:
        flags.append("tls_intercepted")
    if not device.online:
        flags.append("offline")
    # Power and sound first among the rest: a cluster that cannot be heard fails its purpose.
    power = telemetry.get("power")
    if power == "battery_low":
        flags.append("battery_low")
    elif power == "battery":
        flags.append("on_battery")
    if device.silence_at is not None and now - device.silence_at <= SILENCE_RECENT:
        flags.append("output_silent")
    if device.selftest_code in SELFTEST_FAILED:
        flags.append("selftest_failed")
    temp = telemetry.get("cpu_temp_c")
    if isinstance(temp, int | float) and temp >= HOT_C:
        flags.append("hot")
    disk = telemetry.get("disk_used_pct")
    if isinstance(disk, int | float) and disk >= DISK_FULL_PCT:
        flags.append("disk_full")
    signal = telemetry.get("signal_dbm")
    if isinstance(signal, int | float) and signal <= WEAK_SIGNAL_DBM:
        flags.append("weak_signal")
    clock_error = telemetry.get("clock_error_ms")
    if isinstance(clock_error, int | float) and clock_error > CLOCK_ERROR_MS:
        flags.append("clock_unsynced")
    if device.online and (
        device.telemetry_at is None or now - device.telemetry_at > STALE_TELEMETRY
    ):
        flags.append("stale")
    if published_schedule is not None and device.reported_schedule_version != published_schedule:
        flags.append("schedule_behind")
    return flags


def is_alarm(flags: list[str]) -> bool:
    """True when a flag other than 'offline' asks for attention."""
    return any(f != "offline" for f in flags)
