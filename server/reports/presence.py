"""Presence history: record online/offline transitions and measure availability from them."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session

from server.reports.models import DevicePresence


def record_transition(db: Session, *, device_id: int, online: bool, at: datetime) -> None:
    """Append one transition (the bridge calls it when a device comes or goes)."""
    db.add(DevicePresence(device_id=device_id, online=online, at=at))


@dataclass
class Availability:
    """One device's time online, in seconds, over the part of the window it existed."""

    device_id: int
    measured_s: float = 0.0
    online_s: float = 0.0
    longest_outage_s: float = 0.0

    @property
    def share(self) -> float | None:
        """Share of measured time online (None when the device was not there at all)."""
        return self.online_s / self.measured_s if self.measured_s > 0 else None


class Series:
    """Measured and offline seconds per bucket (a local day or month), spread as they come."""

    def __init__(self, edges: list[float]) -> None:
        self.edges = edges  # POSIX seconds of each bucket's start, then the end
        n = len(edges) - 1
        # Partial seconds per bucket, and difference arrays of buckets covered whole.
        self._measured, self._offline = [0.0] * n, [0.0] * n
        self._measured_whole, self._offline_whole = [0] * (n + 1), [0] * (n + 1)

    def add(self, start: float, end: float, *, offline: bool) -> None:
        """Count [start, end) as measured time, or as offline time."""
        part, whole = (
            (self._offline, self._offline_whole)
            if offline
            else (self._measured, self._measured_whole)
        )
        edges, n = self.edges, len(self._measured)
        i = bisect_right(edges, start) - 1
        j = bisect_right(edges, end) - 1
        if i == j:
            if 0 <= i < n:
                part[i] += end - start
            return
        if 0 <= i < n:
            part[i] += edges[i + 1] - start
        if 0 <= j < n:
            part[j] += end - edges[j]
        lo, hi = max(i + 1, 0), min(j, n)
        if lo < hi:
            whole[lo] += 1
            whole[hi] -= 1

    def finish(self) -> list[float | None]:
        """Share online per bucket (None for a bucket nothing was measured in)."""
        run_measured = run_offline = 0
        out: list[float | None] = []
        for k in range(len(self._measured)):
            run_measured += self._measured_whole[k]
            run_offline += self._offline_whole[k]
            length = self.edges[k + 1] - self.edges[k]
            measured = self._measured[k] + run_measured * length
            offline = self._offline[k] + run_offline * length
            out.append(round((measured - offline) / measured, 4) if measured > 0 else None)
        return out


def _transitions(
    db: Session, device_ids: Select[Any], since: datetime, end: datetime
) -> Select[Any]:
    """Each device's last transition before the window, then every one inside it, in order.

    On PostgreSQL the times come as POSIX seconds (a year of a province is many rows).
    """
    last_before = (
        select(DevicePresence.device_id, func.max(DevicePresence.at).label("at"))
        .where(DevicePresence.device_id.in_(device_ids), DevicePresence.at < since)
        .group_by(DevicePresence.device_id)
        .subquery()
    )
    before = select(DevicePresence.device_id, DevicePresence.online, DevicePresence.at).join(
        last_before,
        and_(
            DevicePresence.device_id == last_before.c.device_id,
            DevicePresence.at == last_before.c.at,
        ),
    )
    inside = select(DevicePresence.device_id, DevicePresence.online, DevicePresence.at).where(
        DevicePresence.device_id.in_(device_ids),
        DevicePresence.at >= since,
        DevicePresence.at < end,
    )
    union = before.union_all(inside).subquery()
    at: Any = union.c.at
    if db.get_bind().dialect.name == "postgresql":
        at = func.date_part("epoch", union.c.at)
    return select(union.c.device_id, union.c.online, at).order_by(union.c.device_id, union.c.at)


def availability(
    db: Session,
    *,
    devices: Iterable[tuple[int, datetime, datetime | None]],
    device_ids: Select[Any],
    since: datetime,
    end: datetime,
    series: Series | None = None,
) -> dict[int, Availability]:
    """Availability per device over [since, end) from (id, created_at, revoked_at) and history.

    A device counts from its creation to its revocation; before its first recorded
    transition it is offline (it had never connected).
    """
    spans = {}
    for device_id, created, revoked in devices:
        low, high = max(since, created), min(end, revoked or end)
        if low < high:
            spans[device_id] = (low.timestamp(), high.timestamp())
    history: dict[int, list[tuple[bool, float]]] = {}
    for device_id, online, at in db.execute(_transitions(db, device_ids, since, end)):
        at_s = at if isinstance(at, float) else at.timestamp()
        history.setdefault(device_id, []).append((bool(online), at_s))
    out: dict[int, Availability] = {}
    for device_id, (low_s, high_s) in spans.items():
        state, cursor, online_s, longest = False, low_s, 0.0, 0.0
        for online, at_s in history.get(device_id, ()):
            if at_s <= low_s:
                state = online
                continue
            if at_s >= high_s:
                break
            if online == state:
                continue  # a repeated state (two wills) does not cut an outage in two
            if state:
                online_s += at_s - cursor
            else:
                longest = max(longest, at_s - cursor)
                if series is not None:
                    series.add(cursor, at_s, offline=True)
            state, cursor = online, at_s
        if state:
            online_s += high_s - cursor
        elif high_s > cursor:
            longest = max(longest, high_s - cursor)
            if series is not None:
                series.add(cursor, high_s, offline=True)
        if series is not None:
            series.add(low_s, high_s, offline=False)
        out[device_id] = Availability(device_id, high_s - low_s, online_s, longest)
    return out
