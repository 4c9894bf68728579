"""Time zone helpers: UTC at the boundaries, local wall-clock time for recurrence."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo

LOCAL_TZ_NAME = "Asia/Ho_Chi_Minh"


@cache
def local_tz() -> ZoneInfo:
    """The deployment's local time zone (Vietnam, UTC+7, no daylight saving)."""
    return ZoneInfo(LOCAL_TZ_NAME)


def as_utc(value: datetime, *, field: str = "datetime") -> datetime:
    """Return an aware datetime converted to UTC; a naive one is an error naming `field`."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


def to_local_wall(value: datetime, *, tz: ZoneInfo | None = None) -> datetime:
    """Naive local wall-clock time: naive input is taken as already local, aware is converted."""
    if value.tzinfo is None:
        return value
    return value.astimezone(tz or local_tz()).replace(tzinfo=None)


def wall_to_utc(wall: datetime, *, tz: ZoneInfo | None = None) -> datetime:
    """UTC instant of a naive local wall time, resolved as RFC 5545 says (fold=0).

    fold=0 picks the first of two repeated times, and for a time skipped by a
    clock change uses the offset before the gap.
    """
    return wall.replace(tzinfo=tz or local_tz(), fold=0).astimezone(UTC)
