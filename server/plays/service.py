"""Storing proof-of-play batches idempotently and reading them back."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVarTuple

from sqlalchemy import Select, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from protocol import DeviceEvent, EventBatch, PlayEvent
from server.access import reach
from server.access.actor import Actor
from server.devices.models import Device
from server.orgs.models import Zone
from server.plays.models import DeviceEventRecord, PlayRecord
from server.programmes.models import Programme
from server.selftest.ingest import apply_device_events

log = logging.getLogger(__name__)

_MAX_BIGINT = 2**63 - 1
_MAX_INT = 2**31 - 1
Columns = TypeVarTuple("Columns")


@dataclass(frozen=True)
class StoredBatch:
    """Outcome of one batch: every seq the device may now drop, and how many were unusable."""

    seqs: list[int]
    inserted: int
    unusable: int


def _when(value: float | None) -> datetime | None:
    if value is None:
        return None
    if not math.isfinite(value):
        raise ValueError(f"time {value} is not a finite number")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"time {value} is out of range") from None


def _row(device_id: int, event: PlayEvent, now: datetime) -> dict[str, Any]:
    if event.seq > _MAX_BIGINT:
        raise ValueError(f"seq {event.seq} is too large")
    planned = _when(event.planned_start)
    assert planned is not None
    programme_id = event.programme_id
    return {
        "device_id": device_id,
        "seq": event.seq,
        "item_id": event.item_id,
        "programme_id": programme_id if programme_id and 0 < programme_id <= _MAX_INT else None,
        "priority": event.priority,
        "planned_start": planned,
        "actual_start": _when(event.actual_start),
        "ended_at": _when(event.ended_at),
        "outcome": event.outcome,
        "reason": event.reason,
        "clock_offset_ms": event.clock_offset_ms if _finite(event.clock_offset_ms) else None,
        "clock_error_ms": event.clock_error_ms if _finite(event.clock_error_ms) else None,
        **_relay(event),
        "received_at": now,
    }


RELAY_FIELDS = ("relayed_s", "fallback_s", "silent_s")
NO_RELAY: dict[str, Any] = {"relay_mode": None, **dict.fromkeys(RELAY_FIELDS)}


def _relay(event: PlayEvent) -> dict[str, Any]:
    """The relay figures of a play, each cut to the item's reported play time."""
    if event.kind != "play":
        return NO_RELAY  # a live session's proof has no relayed stretches
    span = None
    if event.actual_start is not None and event.ended_at is not None:
        span = max(0.0, event.ended_at - event.actual_start)
    # A device's bug must not make a relay longer than the item it was part of.
    seconds: dict[str, float | None] = {}
    for name in RELAY_FIELDS:
        value = getattr(event, name)
        seconds[name] = value if value is None or span is None else min(value, span)
    mode: str | None = event.relay_mode
    if mode is None:
        if not any(seconds.values()):
            return NO_RELAY
        # Seconds without a mode: the mode as the protocol defines it from the seconds.
        heard = [n for n in ("relayed_s", "fallback_s") if seconds[n]]
        mode = heard[0].removesuffix("_s") if len(heard) == 1 else "mixed"
    return {"relay_mode": mode, **seconds}


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _device_row(device_id: int, event: DeviceEvent, now: datetime) -> dict[str, Any]:
    if event.seq > _MAX_BIGINT:
        raise ValueError(f"seq {event.seq} is too large")
    at = _when(event.at)
    data = event.model_dump(
        mode="json",
        include={"figures", "level_vs_baseline_db", "baseline", "reasons", "item_id", "silent_s"},
        exclude_none=True,
    )
    return {
        "device_id": device_id,
        "seq": event.seq,
        "kind": event.kind,
        "code": event.code,
        "at": at,
        "detail": event.detail,
        "command_id": event.command_id,
        "data": data,
        "received_at": now,
    }


def _insert_ignoring_duplicates(db: Session, model: type[Any], rows: list[dict[str, Any]]) -> int:
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(model).values(rows).on_conflict_do_nothing(index_elements=["device_id", "seq"])
    result = db.execute(stmt)
    return max(getattr(result, "rowcount", 0) or 0, 0)


def _insert_device_events(db: Session, rows: list[dict[str, Any]]) -> set[int]:
    """Insert device events, ignoring stored (device, seq) pairs; the seqs actually inserted."""
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(DeviceEventRecord)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["device_id", "seq"])
        .returning(DeviceEventRecord.seq)
    )
    return set(db.scalars(stmt))


def store_events(db: Session, *, device: Device, batch: EventBatch, now: datetime) -> StoredBatch:
    """Insert the batch's events, ignoring (device, seq) pairs already stored."""
    rows: list[dict[str, Any]] = []
    device_rows: list[dict[str, Any]] = []
    seqs: list[int] = []
    unusable = 0
    for event in batch.events:
        try:
            if isinstance(event, DeviceEvent):
                device_rows.append(_device_row(device.id, event, now))
            else:
                rows.append(_row(device.id, event, now))
        except ValueError as exc:
            # Acknowledged anyway: an event no server can store must not block the outbox.
            unusable += 1
            log.warning("device %s event %s is unusable: %s", device.uid, event.seq, exc)
        seqs.append(event.seq)
    inserted = 0
    if rows:
        inserted += _insert_ignoring_duplicates(db, PlayRecord, rows)
    if device_rows:
        new = _insert_device_events(db, device_rows)
        inserted += len(new)
        # Only what is new: a resent batch must not log a power change twice.
        apply_device_events(device=device, rows=[r for r in device_rows if r["seq"] in new])
    return StoredBatch(seqs=seqs, inserted=inserted, unusable=unusable)


@dataclass(frozen=True)
class PlayFilter:
    """Which plays to list."""

    device_id: int | None = None
    zone_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(query: Select[*Columns], actor: Actor, where: PlayFilter) -> Select[*Columns]:
    query = query.where(
        PlayRecord.device_id.in_(select(Device.id).where(reach.reachable(actor, Device)))
    )
    if where.device_id is not None:
        query = query.where(PlayRecord.device_id == where.device_id)
    if where.zone_id is not None:
        in_zone = select(Device.id).where(Device.zones.any(Zone.id == where.zone_id))
        query = query.where(PlayRecord.device_id.in_(in_zone))
    if where.since is not None:
        query = query.where(PlayRecord.planned_start >= where.since)
    if where.until is not None:
        query = query.where(PlayRecord.planned_start < where.until)
    return query


def list_plays(
    db: Session, *, actor: Actor, where: PlayFilter, limit: int, offset: int
) -> tuple[list[tuple[PlayRecord, str, str | None]], int]:
    """Plays of the caller's devices, newest planned start first, with uid and programme title."""
    total = db.scalar(_filtered(select(func.count(PlayRecord.id)), actor, where)) or 0
    query = (
        select(PlayRecord, Device.uid, Programme.title)
        .join(Device, Device.id == PlayRecord.device_id)
        .outerjoin(Programme, Programme.id == PlayRecord.programme_id)
    )
    query = _filtered(query, actor, where).order_by(
        PlayRecord.planned_start.desc(), PlayRecord.device_id, PlayRecord.seq
    )
    rows = db.execute(query.limit(limit).offset(offset)).all()
    return [(row[0], row[1], row[2]) for row in rows], total
