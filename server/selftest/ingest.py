"""What newly stored device events change on the device row: its self-test and silence summary."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from schedules import local_tz
from server.devices.models import Device

log = logging.getLogger(__name__)

# Codes that say nothing about the horns (not run, or cut short): they never replace the last
# real result, or a failed test followed by a busy one would clear its alarm.
NOT_A_RESULT = frozenset({"busy", "interrupted"})


def apply_device_events(*, device: Device, rows: Iterable[dict[str, Any]]) -> None:
    """Fold newly stored device-event rows (plays.service._device_row) into the device row."""
    for row in sorted(rows, key=lambda r: r["at"]):
        at: datetime = row["at"]
        if row["kind"] == "selftest" and row["code"] not in NOT_A_RESULT:
            # A test that ended before the one already known arrived late: keep the newer.
            if device.selftest_at is None or at >= device.selftest_at:
                device.selftest_code = row["code"]
                device.selftest_at = at
        elif row["kind"] == "silence":
            if device.silence_at is None or at > device.silence_at:
                device.silence_at = at
        elif row["kind"] == "power":
            _log_power(device, row["code"], at)


def _log_power(device: Device, code: str, at: datetime) -> None:
    when = at.astimezone(local_tz()).strftime("%H:%M:%S %d/%m/%Y")
    who = f"device {device.uid} ({device.name})"
    cap = (device.telemetry or {}).get("battery_volume_cap")
    capped = f", volume capped at {cap}%" if isinstance(cap, int) else ""
    if code == "battery":
        log.info("%s lost mains power at %s (Vietnam time): on backup battery%s", who, when, capped)
    elif code == "battery_low":
        log.info(
            "%s battery nearly empty at %s (Vietnam time): it goes silent soon unless mains power"
            " returns",
            who,
            when,
        )
    else:
        log.info("%s back on mains power at %s (Vietnam time)", who, when)
