"""Telemetry history: one stored sample per device per interval, kept for a few days."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from protocol import Telemetry
from server.devices.models import Device, TelemetrySample


class SampleThrottle:
    """Decides which telemetry messages become stored samples (in memory, per device)."""

    def __init__(
        self,
        *,
        interval_s: float,
        retention: timedelta,
        prune_every_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.retention = retention
        self.prune_every_s = prune_every_s
        self.clock = clock
        self._last: dict[int, float] = {}
        self._last_prune: float | None = None

    def due(self, device_id: int) -> bool:
        """True when this device's next sample should be stored (and marks it stored)."""
        now = self.clock()
        last = self._last.get(device_id)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[device_id] = now
        return True

    def prune_due(self) -> bool:
        """True about once an hour: time to delete samples past the retention."""
        now = self.clock()
        if self._last_prune is not None and now - self._last_prune < self.prune_every_s:
            return False
        self._last_prune = now
        return True


def store_sample(db: Session, *, device: Device, msg: Telemetry, now: datetime) -> None:
    """Append one sample of the health figures a chart shows."""
    db.add(
        TelemetrySample(
            device_id=device.id,
            at=now,
            cpu_temp_c=msg.cpu_temp_c,
            signal_dbm=msg.signal_dbm,
            disk_used_pct=msg.disk_used_pct,
            disk_free_mb=msg.disk_free_mb,
            load_1m=msg.load_1m,
            mem_used_pct=msg.mem_used_pct,
        )
    )


def prune_samples(db: Session, *, before: datetime) -> None:
    """Delete samples older than `before`."""
    db.execute(delete(TelemetrySample).where(TelemetrySample.at < before))


def samples(
    db: Session, *, device_id: int, since: datetime, until: datetime, limit: int = 5000
) -> list[TelemetrySample]:
    """A device's samples in [since, until), oldest first."""
    query = (
        select(TelemetrySample)
        .where(
            TelemetrySample.device_id == device_id,
            TelemetrySample.at >= since,
            TelemetrySample.at < until,
        )
        .order_by(TelemetrySample.at)
        .limit(limit)
    )
    return list(db.scalars(query))
