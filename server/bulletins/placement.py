"""Where a delivered bulletin plays without the commune acting: priority and emergency.

Priority: one programme per commune at the head of its next regular slot. The head is kept
by start times, not by a tie-break: the agent orders items of one instant by priority
(`edge_agent.player`, key (start, -rank, item_id)), so a priority item starting at the slot
beats the commune's normal items; the slot's priority bulletins are stacked back to back
in `slot_position` order (position 0 at the slot start, each next one when the one before
ends), so they never overlap and their order is explicit in every device's schedule. The
programme's `valid_from` holds the slot start: the key that groups one slot's bulletins.

Emergency: from now on every zone of the commune's subtree, repeated every
`repeat_every_min` until `valid_until` with hourly RRULEs (the schedules package repeats
at most hourly, so an n-minute cycle is split into a few rules with the same period).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from math import lcm

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import to_local_wall
from server.audit import service as audit
from server.bulletins.models import (
    EMERGENCY,
    PLAYED,
    PRIORITY,
    SCHEDULED,
    Bulletin,
    BulletinDelivery,
)
from server.bulletins.slots import next_slot_start
from server.devices.models import Device
from server.events.outbox import emit
from server.events.types import ReplanNeeded
from server.orgs.models import Zone, zone_devices
from server.orgs.tree import subtree_ids
from server.programmes.models import (
    APPROVED,
    DRAFT,
    PLANNED,
    Programme,
    ProgrammeClip,
    ProgrammeTransition,
)
from server.programmes.validation import display_text_of, to_spec
from server.programmes.workflow import record

NO_SLOT_WARNING = "Không có khung giờ phát thường xuyên: đã xếp lịch lúc bắt đầu hiệu lực."
NO_AUDIO_WARNING = "Bản tin chưa có âm thanh: chưa thể xếp lịch phát."
NO_ZONE_WARNING = "Đơn vị chưa có vùng phát nào: chưa thể xếp lịch phát."
LATE_WARNING = "Vị trí này bắt đầu sau khi bản tin hết hiệu lực: hãy đưa lên trước."


def place(
    db: Session, *, bulletin: Bulletin, deliveries: list[BulletinDelivery], now: datetime
) -> None:
    """Priority: the head of each commune's next regular slot; emergency: at once. Normal: none."""
    if bulletin.level not in (PRIORITY, EMERGENCY):
        return  # normal bulletins wait for the commune
    placed = 0
    for delivery in deliveries:
        if delivery.programme_id is not None:
            continue  # already placed (a retried call must not place twice)
        if bulletin.level == PRIORITY:
            placed += _place_priority(db, bulletin=bulletin, delivery=delivery, now=now)
        else:
            placed += _place_emergency(db, bulletin=bulletin, delivery=delivery, now=now)
    db.flush()
    if placed:
        emit(db, ReplanNeeded(reason=f"bulletin {bulletin.id} placed in {placed} unit(s)"))


# -- shared ----------------------------------------------------------------------------------


def bulletin_clip_ids(bulletin: Bulletin) -> list[int]:
    """The bulletin's audio: its clips in order, else the clip its text was read into."""
    ids = [bc.clip_id for bc in bulletin.clips]
    if not ids and bulletin.tts_clip_id is not None:
        ids = [bulletin.tts_clip_id]
    return ids


def subtree_zones(db: Session, *, org_unit_id: int) -> list[Zone]:
    """Every zone of the unit and the units below it."""
    units = subtree_ids(db, root_id=org_unit_id)
    return list(db.scalars(select(Zone).where(Zone.org_unit_id.in_(units)).order_by(Zone.id)))


def count_clusters(db: Session, *, zone_ids: list[int]) -> int:
    """Distinct active devices in the zones."""
    query = (
        select(zone_devices.c.device_id)
        .join(Device, Device.id == zone_devices.c.device_id)
        .where(zone_devices.c.zone_id.in_(zone_ids), Device.revoked_at.is_(None))
        .distinct()
    )
    return len(list(db.scalars(query)))


def _programme(
    db: Session,
    *,
    bulletin: Bulletin,
    delivery: BulletinDelivery,
    clip_ids: list[int],
    zones: list[Zone],
    now: datetime,
    note: str,
    start: datetime | None = None,
    rule: tuple[datetime, str] | None = None,
    valid_from: datetime | None = None,
) -> Programme:
    """The commune's programme for the bulletin, approved at once (its level decided it)."""
    programme = Programme(
        title=bulletin.title[:300],
        description=f"Bản tin cấp trên số {bulletin.id}",
        # E-boards show the bulletin's text (its title when it came as audio only).
        display_text=display_text_of(bulletin.text or "", fallback=bulletin.title),
        priority=bulletin.level,
        status=DRAFT,
        start=start,
        dtstart=rule[0] if rule else None,
        rrule=rule[1] if rule else None,
        valid_from=valid_from,
        valid_until=bulletin.valid_until,
        org_unit_id=delivery.org_unit_id,
        created_by=bulletin.approved_by,
        bulletin_id=bulletin.id,
        created_at=now,
        updated_at=now,
    )
    programme.clips = [ProgrammeClip(position=i, clip_id=c) for i, c in enumerate(clip_ids)]
    programme.zones = list(zones)
    db.add(programme)
    db.flush()
    to_spec(programme)  # the planner's view must hold: a bad rule fails here, not in the planner
    db.add(
        ProgrammeTransition(
            programme_id=programme.id, from_status=None, to_status=DRAFT, user_id=None, at=now,
            note=f"made from bulletin {bulletin.id}",
        )
    )  # fmt: skip
    record(db, programme=programme, to=APPROVED, user_id=None, now=now, note=note)
    audit.record(
        db,
        actor=None,
        action="bulletin.place",
        object_type="programme",
        object_id=programme.id,
        org_unit_id=delivery.org_unit_id,
        summary=programme.title,
        details={
            "bulletin_id": bulletin.id,
            "delivery_id": delivery.id,
            "level": bulletin.level,
            "start": (start or (rule[0] if rule else now)).isoformat(),
            "rrule": rule[1] if rule else None,
            "zone_ids": [z.id for z in zones],
        },
        at=now,
    )
    return programme


def _ready(
    db: Session, bulletin: Bulletin, delivery: BulletinDelivery
) -> tuple[list[int], list[Zone]] | None:
    """The audio and zones to place with, or None (and a warning) when one is missing."""
    clip_ids = bulletin_clip_ids(bulletin)
    if not clip_ids:
        delivery.warning = NO_AUDIO_WARNING
        return None
    zones = subtree_zones(db, org_unit_id=delivery.org_unit_id)
    if not zones:
        delivery.warning = NO_ZONE_WARNING
        return None
    delivery.clusters_targeted = count_clusters(db, zone_ids=[z.id for z in zones])
    return clip_ids, zones


# -- priority --------------------------------------------------------------------------------


def _place_priority(
    db: Session, *, bulletin: Bulletin, delivery: BulletinDelivery, now: datetime
) -> int:
    low, high = max(now, bulletin.valid_from), bulletin.valid_until
    ready = _ready(db, bulletin, delivery)
    if ready is None or low >= high:
        return 0
    head = next_slot_start(db, org_unit_id=delivery.org_unit_id, after=low, until=high)
    delivery.warning = ""
    if head is None:
        head, delivery.warning = low, NO_SLOT_WARNING
    others = slot_group(db, org_unit_id=delivery.org_unit_id, head=head)
    programme = _programme(
        db, bulletin=bulletin, delivery=delivery, clip_ids=ready[0], zones=ready[1], now=now,
        start=head, valid_from=head,
        note=f"priority bulletin {bulletin.id}, placed at the head of the slot",
    )  # fmt: skip
    delivery.programme_id = programme.id
    delivery.status, delivery.status_at = SCHEDULED, now
    restack(db, order=[delivery, *others], head=head, now=now)
    return 1


def slot_group(db: Session, *, org_unit_id: int, head: datetime) -> list[BulletinDelivery]:
    """The unit's placed priority deliveries of the slot starting at `head`, in play order."""
    query = (
        select(BulletinDelivery)
        .join(Programme, Programme.id == BulletinDelivery.programme_id)
        .join(Bulletin, Bulletin.id == BulletinDelivery.bulletin_id)
        .where(
            BulletinDelivery.org_unit_id == org_unit_id,
            BulletinDelivery.slot_position.is_not(None),
            BulletinDelivery.status.in_((SCHEDULED, PLAYED)),
            Bulletin.level == PRIORITY,
            Programme.status.in_(PLANNED),
            Programme.valid_from == head,
        )
        .order_by(BulletinDelivery.slot_position, BulletinDelivery.id)
    )
    return list(db.scalars(query))


def placed_priority(db: Session, *, delivery: BulletinDelivery) -> tuple[Bulletin, datetime] | None:
    """A scheduled priority delivery's bulletin and slot head; None for any other delivery."""
    # By id, not through reach: whoever reaches a delivery may read what it was sent.
    bulletin = db.get(Bulletin, delivery.bulletin_id)
    programme = db.get(Programme, delivery.programme_id) if delivery.programme_id else None
    if (
        bulletin is None
        or bulletin.level != PRIORITY
        or delivery.status != SCHEDULED
        or delivery.slot_position is None
        or programme is None
        or programme.valid_from is None
    ):
        return None
    return bulletin, programme.valid_from


def restack(db: Session, *, order: list[BulletinDelivery], head: datetime, now: datetime) -> None:
    """Number the slot's deliveries 0.. and start each when the one before it ends."""
    at = head
    for position, delivery in enumerate(order):
        programme = db.get(Programme, delivery.programme_id)
        assert programme is not None  # slot_group and placement only list placed deliveries
        delivery.slot_position = position
        if programme.start != at:
            programme.start, programme.updated_at = at, now
        delivery.first_start = at
        bulletin = db.get(Bulletin, delivery.bulletin_id)
        late = bulletin is not None and at >= bulletin.valid_until
        if late:
            delivery.warning = LATE_WARNING
        elif delivery.warning == LATE_WARNING:
            delivery.warning = ""
        at += timedelta(seconds=sum(pc.clip.duration_s for pc in programme.clips))
    db.flush()


# -- emergency -------------------------------------------------------------------------------


def repeat_rules(start_wall: datetime, every_min: int) -> list[tuple[datetime, str]]:
    """(local dtstart, RRULE) pairs whose occurrences are start, start + n min, start + 2n, …

    An n-minute cycle lines up with the hour every lcm(n, 60) minutes; within that period
    the occurrences falling in the same hour share one FREQ=HOURLY rule with that period.
    """
    period = lcm(every_min, 60)
    minutes_by_hour: dict[int, list[int]] = {}
    for k in range(period // every_min):
        offset = start_wall.minute + k * every_min
        minutes_by_hour.setdefault(offset // 60, []).append(offset % 60)
    top = start_wall.replace(minute=0, microsecond=0)
    rules: list[tuple[datetime, str]] = []
    for hour, minutes in sorted(minutes_by_hour.items()):
        first = top + timedelta(hours=hour, minutes=min(minutes))
        by_minute = ",".join(str(m) for m in sorted(minutes))
        rule = (
            f"FREQ=HOURLY;INTERVAL={period // 60};BYMINUTE={by_minute};BYSECOND={start_wall.second}"
        )
        rules.append((first, rule))
    return rules


def _place_emergency(
    db: Session, *, bulletin: Bulletin, delivery: BulletinDelivery, now: datetime
) -> int:
    # Whole seconds: a recurrence runs on seconds; the first play is then < 1 s "late".
    start = max(now, bulletin.valid_from).replace(microsecond=0)
    ready = _ready(db, bulletin, delivery)
    if ready is None or start >= bulletin.valid_until:
        return 0
    clip_ids, zones = ready
    note = f"emergency bulletin {bulletin.id}, approved at once"
    if bulletin.repeat_every_min:
        rules = repeat_rules(to_local_wall(start), bulletin.repeat_every_min)
        timings: list[tuple[datetime | None, tuple[datetime, str] | None]] = [
            (None, rule) for rule in rules
        ]
    else:
        timings = [(start, None)]
    programmes = [
        _programme(
            db,
            bulletin=bulletin,
            delivery=delivery,
            clip_ids=clip_ids,
            zones=zones,
            now=now,
            note=note,
            start=one_off,
            rule=rule,
        )
        for one_off, rule in timings
    ]
    delivery.programme_id = programmes[0].id  # the one that plays at once
    delivery.first_start = start
    delivery.status, delivery.status_at = SCHEDULED, now
    return 1
