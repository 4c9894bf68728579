"""One planning pass: compile every device's schedule, keep versions, find clips zones need."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from schedules import ScheduleCompiler, ScheduleDocument, local_tz, to_local_wall, wall_to_utc
from server.devices.display import UnitNames, profile_has_display
from server.devices.models import Device
from server.planner.models import DeviceSchedule, ZoneClip
from server.programmes.items import RelayTiming
from server.programmes.workflow import advance_lifecycle, planned_programmes

# Older versions are only kept for diagnosis; the device only ever needs the latest.
KEEP_VERSIONS = 5


@dataclass
class PlanResult:
    """What a pass changed: new documents to publish and zone clips to send."""

    window: tuple[datetime, datetime]
    documents: list[ScheduleDocument] = field(default_factory=list)
    zone_clips: list[tuple[int, str]] = field(default_factory=list)
    unchanged: int = 0
    lifecycle: list[tuple[int, str, str]] = field(default_factory=list)


def plan_window(now: datetime, *, horizon_days: int) -> tuple[datetime, datetime]:
    """From the start of today (local) to `horizon_days` full days after it.

    Anchoring at local midnight keeps the window, and so the content hash, the same for
    every pass of one day: versions only change when the plan does (or once a day).
    """
    today = to_local_wall(now).date()
    start = wall_to_utc(datetime.combine(today, time(0, 0)), tz=local_tz())
    end = wall_to_utc(
        datetime.combine(today + timedelta(days=horizon_days + 1), time(0, 0)), tz=local_tz()
    )
    return start, end


def _latest_versions(db: Session) -> dict[int, tuple[int, str]]:
    newest = (
        select(DeviceSchedule.device_id, func.max(DeviceSchedule.version).label("v"))
        .group_by(DeviceSchedule.device_id)
        .subquery()
    )
    rows = db.execute(
        select(DeviceSchedule.device_id, DeviceSchedule.version, DeviceSchedule.content_hash).join(
            newest,
            (newest.c.device_id == DeviceSchedule.device_id)
            & (newest.c.v == DeviceSchedule.version),
        )
    )
    return {device_id: (version, digest) for device_id, version, digest in rows}


def _zone_clip_needs(
    db: Session, compiler: ScheduleCompiler, zones: Iterable[int], now: datetime
) -> list[tuple[int, str]]:
    """Queue each (zone, clip) the plan needs and return every one not yet fully published."""
    zone_ids = sorted(set(zones))
    if not zone_ids:
        return []
    known = {
        (row.zone_id, row.sha256): row
        for row in db.scalars(select(ZoneClip).where(ZoneClip.zone_id.in_(zone_ids)))
    }
    pending: list[tuple[int, str]] = []
    for zone_id in zone_ids:
        needed: dict[str, None] = {}
        for item in compiler.items_for_zones([zone_id]):
            for clip in item.needed_clips():  # relay fallbacks too
                needed.setdefault(clip.sha256)
        for sha in needed:
            row = known.get((zone_id, sha))
            if row is None:
                db.add(ZoneClip(zone_id=zone_id, sha256=sha, queued_at=now))
                pending.append((zone_id, sha))
            elif row.published_at is None:
                pending.append((zone_id, sha))  # an interrupted publication: send again
    return pending


def plan_once(
    db: Session, *, now: datetime, horizon_days: int, relay_timing: RelayTiming | None = None
) -> PlanResult:
    """Advance programme statuses, then compile and version every active device's schedule.

    relay_timing: the relay settings every RelaySpec carries (default: the schedules' ones).
    A device whose firmware profile has a screen (an e-board) also gets the programmes'
    texts and the name of the commune it stands in (ScheduleDocument.display).
    """
    moves = advance_lifecycle(db, now=now)
    window = plan_window(now, horizon_days=horizon_days)
    result = PlanResult(window=window, lifecycle=moves)
    compiler = ScheduleCompiler(
        programmes=planned_programmes(db, timing=relay_timing),
        window_start=window[0],
        window_end=window[1],
    )
    latest = _latest_versions(db)
    devices = db.scalars(select(Device).where(Device.revoked_at.is_(None)).order_by(Device.id))
    zones_with_devices: set[int] = set()
    unit_names = UnitNames(db)
    for device in devices:
        zone_ids = [z.id for z in device.zones]
        zones_with_devices.update(zone_ids)
        version, digest = latest.get(device.id, (0, ""))
        has_screen = profile_has_display(device.firmware_profile)
        board_unit = unit_names.of_device(device) if has_screen else None
        doc = compiler.compile(
            device_id=device.uid,
            zone_ids=zone_ids,
            version=version + 1,
            generated_at=now,
            display_unit=board_unit,
        )
        if doc.content_hash() == digest:
            result.unchanged += 1
            continue
        db.add(
            DeviceSchedule(
                device_id=device.id,
                version=doc.version,
                content_hash=doc.content_hash(),
                document=doc.model_dump(mode="json"),
                published_at=now,
            )
        )
        db.execute(
            delete(DeviceSchedule).where(
                DeviceSchedule.device_id == device.id,
                DeviceSchedule.version <= doc.version - KEEP_VERSIONS,
            )
        )
        result.documents.append(doc)
    result.zone_clips = _zone_clip_needs(db, compiler, zones_with_devices, now)
    db.flush()
    return result


def latest_schedule(db: Session, *, device_id: int) -> DeviceSchedule | None:
    """The newest published schedule of a device."""
    query = (
        select(DeviceSchedule)
        .where(DeviceSchedule.device_id == device_id)
        .order_by(DeviceSchedule.version.desc())
        .limit(1)
    )
    return db.scalar(query)


def mark_zone_clip_published(db: Session, *, zone_id: int, sha256: str, at: datetime) -> None:
    """Record that every chunk of a zone clip reached the broker."""
    row = db.get(ZoneClip, (zone_id, sha256))
    if row is not None:
        row.published_at = at
