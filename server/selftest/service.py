"""Self-test use cases: ask a device for a test, read its results and events, set the schedule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audio.selftest import VIETNAMESE
from server.access import reach
from server.access.actor import Actor
from server.audit import service as audit
from server.devices import service as devices_service
from server.devices.models import Device, DeviceCommand
from server.domain import DomainError
from server.events.outbox import emit
from server.events.types import DesiredStateChanged
from server.orgs.models import OrgUnit
from server.orgs.tree import subtree_ids
from server.plays.models import DeviceEventRecord
from server.selftest.ingest import NOT_A_RESULT
from server.selftest.schedule import Schedule, quiet_hours_problem, resolve

# The verdict of every self-test code, as the console shows it (audio.selftest's own words
# for the codes it judges, and the device's words for runs that measured nothing).
VERDICTS: dict[str, str] = {
    **VIETNAMESE,
    "no_capture": "micro chưa được lắp",
    "interrupted": "bị ngắt do phát khẩn cấp",
    "busy": "loa đang phát, sẽ thử lại",
    "failed": "lỗi khi đo",
}
TREND_SPAN = timedelta(weeks=12)
TREND_LIMIT = 500  # twelve weeks of daily runs and a few manual ones, with room to spare
E = DeviceEventRecord


@dataclass(frozen=True)
class SelfTests:
    """A device's self-test runs: the latest result, the baseline, a page and the trend."""

    latest: DeviceEventRecord | None
    baseline: DeviceEventRecord | None
    items: list[DeviceEventRecord]
    trend: list[DeviceEventRecord]


def request_self_test(
    db: Session,
    *,
    actor: Actor,
    device_id: int,
    volume: int | None,
    rebaseline: bool,
    mqtt_on: bool,
    now: datetime,
    ttl: timedelta,
) -> DeviceCommand:
    """Store a self_test command for a device; it is published once stored (as a test tone)."""
    device = reach.load(db, actor, Device, device_id)
    if not mqtt_on:
        raise DomainError(503, "This server has no MQTT connection; commands are off.")
    args: dict[str, Any] = {"rebaseline": rebaseline}
    if volume is not None:
        args["volume"] = volume
    return devices_service.issue_command(
        db, actor=actor, device=device, name="self_test", args=args, now=now, ttl=ttl
    )


def self_tests(
    db: Session, *, actor: Actor, device_id: int, limit: int, now: datetime
) -> SelfTests:
    """A device's self-test runs, newest first, with its baseline and 12 weeks of levels."""
    device = reach.load(db, actor, Device, device_id)
    mine = select(E).where(E.device_id == device.id, E.kind == "selftest")
    newest = (E.at.desc(), E.id.desc())
    items = list(db.scalars(mine.order_by(*newest).limit(limit)))
    # The latest result, as the health flag reads it (a busy or interrupted run measured
    # nothing); only a device that never measured shows its newest run of any kind.
    result = mine.where(E.code.not_in(NOT_A_RESULT)).order_by(*newest).limit(1)
    latest = db.scalars(result).first() or (items[0] if items else None)
    is_baseline = (E.code == "baseline") | E.data["baseline"].as_boolean()
    baseline = db.scalars(mine.where(is_baseline).order_by(*newest).limit(1)).first()
    trend = db.scalars(
        mine.where(E.at >= now - TREND_SPAN, E.at <= now).order_by(*newest).limit(TREND_LIMIT)
    )
    measured = [r for r in trend if isinstance((r.data or {}).get("figures"), dict)]
    return SelfTests(
        latest=latest,
        baseline=baseline,
        items=items,
        trend=measured[::-1],
    )


def device_events(
    db: Session, *, actor: Actor, device_id: int, kind: str | None, limit: int
) -> list[DeviceEventRecord]:
    """A device's events (self-tests, silence, power), newest first, of one kind or all."""
    device = reach.load(db, actor, Device, device_id)
    query = select(E).where(E.device_id == device.id)
    if kind is not None:
        query = query.where(E.kind == kind)
    return list(db.scalars(query.order_by(E.at.desc(), E.id.desc()).limit(limit)))


def set_schedule(
    db: Session, *, actor: Actor, unit_id: int, daily_at: str | None, volume: int
) -> tuple[OrgUnit, list[int]]:
    """Set a unit's daily self-test; the devices whose schedule changes get a new state."""
    unit = reach.load(db, actor, OrgUnit, unit_id)
    if daily_at is not None and (problem := quiet_hours_problem(daily_at)) is not None:
        raise DomainError(422, problem)
    devices = list(
        db.scalars(select(Device).where(Device.org_unit_id.in_(subtree_ids(db, root_id=unit.id))))
    )
    before = _schedules(db, devices)
    unit.selftest_daily_at = daily_at
    unit.selftest_volume = volume
    db.flush()
    after = _schedules(db, devices)
    changed = sorted(d.id for d in devices if before[d.id] != after[d.id])
    for device in devices:
        if device.id in changed:
            device.state_version += 1
    audit.record(
        db,
        actor=actor,
        action="org_unit.selftest",
        object_type="org_unit",
        object_id=unit.id,
        org_unit_id=unit.id,
        summary=unit.name,
        details={"daily_at": daily_at, "volume": volume, "devices": len(changed)},
    )
    if changed:
        emit(db, DesiredStateChanged(device_ids=tuple(changed)))
    return unit, changed


def _schedules(db: Session, devices: list[Device]) -> dict[int, tuple[str | None, int]]:
    """What each device's desired state says about the self-test (the unit that set it aside)."""
    cache: dict[int, Schedule] = {}
    out: dict[int, tuple[str | None, int]] = {}
    for device in devices:
        found = resolve(db, org_unit_id=device.org_unit_id, cache=cache)
        out[device.id] = (found.daily_at, found.volume)
    return out
