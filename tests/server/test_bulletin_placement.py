"""Priority bulletins at the head of a commune's next regular slot, reordering, emergencies.

Real database (SQLite, and PostgreSQL when configured), real planner pass (plan_once): what
a device would play is read from its compiled schedule document. Bulletin and delivery
rows are built directly (the sending side's use cases are tested on their own).

Tree: province P › commune A › village A1; P › commune B. Zone ZA (A) holds device 1,
zone ZA1 (A1) device 2, zone ZB (B) device 3. "Now" is Monday 2031-03-03 07:00 local.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from schedules import ActivePlayback, PlaybackItem, ScheduleDocument, after_end, decide
from schedules.arbiter import Action
from server.access.actor import Actor, load_actor
from server.audit.models import AuditEntry
from server.bulletins import slot_service
from server.bulletins.models import (
    APPROVED,
    DELIVERED,
    SCHEDULED,
    Bulletin,
    BulletinClip,
    BulletinDelivery,
    RegularSlot,
)
from server.bulletins.placement import NO_SLOT_WARNING, place, repeat_rules
from server.clips.models import Clip
from server.db import make_engine, make_session_factory
from server.devices.models import Device
from server.domain import DomainError
from server.events.models import OutboxEvent
from server.migrate import upgrade
from server.orgs.models import OrgUnit, Zone
from server.planner.compile import latest_schedule, plan_once
from server.programmes.models import Programme, ProgrammeClip, ProgrammeTransition
from server.users.models import User

NOW = datetime(2031, 3, 3, 0, 0, tzinfo=UTC)  # Monday 07:00 in Vietnam
SLOT_17 = datetime(2031, 3, 3, 10, 0, tzinfo=UTC)  # Monday 17:00 local
_serial = itertools.count(1)


@dataclass
class Place:
    """The database and the ids the tests use."""

    factory: sessionmaker[Session]
    p: int
    a: int
    a1: int
    b: int
    za: int
    za1: int
    zb: int
    dev1: int
    dev2: int
    dev3: int
    clip60: int
    clip30: int
    admin_a: int
    admin_b: int


def _device(db: Session, unit_id: int) -> int:
    n = next(_serial)
    device = Device(
        uid=f"loa-{n}",
        name=f"Cụm {n}",
        org_unit_id=unit_id,
        firmware_profile="sim",
        mqtt_password_hash="x",
    )
    db.add(device)
    db.flush()
    return device.id


def _zone(db: Session, unit_id: int, device_id: int) -> int:
    zone = Zone(org_unit_id=unit_id, name=f"Vùng {next(_serial)}")
    db.add(zone)
    db.flush()
    device = db.get(Device, device_id)
    assert device is not None
    device.zones = [*device.zones, zone]
    db.flush()
    return zone.id


def _clip(db: Session, unit_id: int, seconds: float) -> int:
    sha = f"{next(_serial):064x}"
    clip = Clip(
        sha256=sha, original_sha256=sha, title=f"Tin {sha[-4:]}", original_duration_s=seconds,
        original_sample_rate=48000, original_channels=1, original_size_bytes=1000,
        duration_s=seconds, size_bytes=1000, peaks=[], org_unit_id=unit_id,
    )  # fmt: skip
    db.add(clip)
    db.flush()
    return clip.id


def _unit(db: Session, name: str, kind: str, parent: int | None) -> int:
    unit = OrgUnit(name=name, kind=kind, parent_id=parent)
    db.add(unit)
    db.flush()
    return unit.id


def _admin(db: Session, unit_id: int) -> int:
    user = User(username=f"admin{next(_serial)}", password_hash="x", role="admin")
    user.org_unit_id = unit_id
    db.add(user)
    db.flush()
    return user.id


@pytest.fixture
def place_db(db_url: str) -> Iterator[Place]:
    """The tree, zones, devices, two clips, 05:00 and 17:00 Mon–Sat slots for commune A."""
    engine = make_engine(db_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with factory() as db:
        p = _unit(db, "Tỉnh P", "province", None)
        a = _unit(db, "Xã A", "commune", p)
        a1 = _unit(db, "Thôn A1", "village", a)
        b = _unit(db, "Xã B", "commune", p)
        dev1, dev2, dev3 = _device(db, a), _device(db, a1), _device(db, b)
        ids = Place(
            factory=factory, p=p, a=a, a1=a1, b=b,
            za=_zone(db, a, dev1), za1=_zone(db, a1, dev2), zb=_zone(db, b, dev3),
            dev1=dev1, dev2=dev2, dev3=dev3,
            clip60=_clip(db, p, 60.0), clip30=_clip(db, p, 30.0),
            admin_a=_admin(db, a), admin_b=_admin(db, b),
        )  # fmt: skip
        for start in ("05:00", "17:00"):
            db.add(RegularSlot(org_unit_id=a, start_time=start, weekdays="123456"))
        db.commit()
    yield ids
    engine.dispose()


def bulletin(
    db: Session,
    w: Place,
    *,
    level: str,
    clip_id: int,
    units: Sequence[int],
    valid_from: datetime = NOW,
    valid_until: datetime = NOW + timedelta(days=2),
    repeat_every_min: int | None = None,
    status: str = DELIVERED,
) -> tuple[Bulletin, list[BulletinDelivery]]:
    """An approved bulletin from the province with a delivery per unit."""
    b = Bulletin(
        title=f"Bản tin {next(_serial)}", level=level, valid_from=valid_from,
        valid_until=valid_until, repeat_every_min=repeat_every_min, status=APPROVED,
        org_unit_id=w.p, approved_at=NOW,
    )  # fmt: skip
    b.clips = [BulletinClip(position=0, clip_id=clip_id)]
    db.add(b)
    db.flush()
    deliveries = [BulletinDelivery(bulletin_id=b.id, org_unit_id=u, status=status) for u in units]
    db.add_all(deliveries)
    db.flush()
    return b, deliveries


def own_programme(
    db: Session, w: Place, *, start: datetime, priority: str = "normal", zone: int | None = None
) -> int:
    """Commune A's own approved one-off programme."""
    prog = Programme(
        title=f"Chương trình xã {next(_serial)}", priority=priority, status="approved",
        start=start, org_unit_id=w.a,
    )  # fmt: skip
    prog.clips = [ProgrammeClip(position=0, clip_id=w.clip30)]
    found = db.get(Zone, zone or w.za)
    assert found is not None
    prog.zones = [found]
    db.add(prog)
    db.flush()
    return prog.id


def device_document(db: Session, device_id: int, now: datetime = NOW) -> ScheduleDocument:
    """A planning pass, then the device's newest compiled document."""
    plan_once(db, now=now, horizon_days=7)
    row = latest_schedule(db, device_id=device_id)
    assert row is not None
    return ScheduleDocument.model_validate(row.document)


def play_order(items: Sequence[PlaybackItem]) -> list[int]:
    """Programme ids in the order a device plays them: the agent's due order and arbiter.

    edge_agent.player takes due items by (start, -priority rank, item_id) and asks
    schedules.arbiter what to do with each (decide) and what follows an end (after_end).
    """
    pending = sorted(items, key=lambda i: (i.start, -i.priority.rank, i.item_id))
    order: list[int] = []
    waiting: list[PlaybackItem] = []
    playing: PlaybackItem | None = None
    began = end = datetime.min.replace(tzinfo=UTC)
    while pending or waiting or playing is not None:
        if playing is not None and (not pending or end <= pending[0].start):
            due = [i for i in pending if i.start <= end]
            pending = pending[len(due) :]
            result = after_end(suspended=[], waiting=[*waiting, *due], now=end)
            waiting, playing = list(result.waiting), result.start
            if playing is not None:
                order.append(playing.programme_id)
                began, end = end, end + playing.duration
            continue
        if not pending:
            break  # only items that no longer fit are left
        item = pending.pop(0)
        active = (
            None
            if playing is None
            else ActivePlayback(playing, (item.start - began).total_seconds())
        )
        decision = decide(playing=active, incoming=item, now=item.start)
        assert decision.action is not Action.PREEMPT, "no preemption expected in these slots"
        if decision.action is Action.PLAY:
            playing, began, end = item, item.start, item.end
            order.append(item.programme_id)
        elif decision.action is Action.WAIT:
            waiting.append(item)
    return order


def actor_of(db: Session, user_id: int) -> Actor:
    user = db.get(User, user_id)
    assert user is not None
    return load_actor(db, user=user, ip="192.0.2.9", via_cookie=False)


# -- priority ----------------------------------------------------------------------------------


def test_priority_lands_at_the_head_of_the_next_slot_before_the_communes_own_item(
    place_db: Place,
) -> None:
    w = place_db
    with w.factory() as db:
        own = own_programme(db, w, start=SLOT_17)  # the commune's own 17:00 normal item
        b, (d,) = bulletin(db, w, level="priority", clip_id=w.clip60, units=[w.a])
        place(db, bulletin=b, deliveries=[d], now=NOW)
        db.commit()
        assert d.status == SCHEDULED and d.slot_position == 0 and d.warning == ""
        assert d.first_start == SLOT_17  # 07:00 now: the 17:00 slot is next (05:00 has passed)
        assert d.clusters_targeted == 2  # devices 1 and 2: the commune's whole subtree
        prog = db.get(Programme, d.programme_id)
        assert prog is not None
        assert (prog.status, prog.priority, prog.bulletin_id) == ("approved", "priority", b.id)
        assert {z.id for z in prog.zones} == {w.za, w.za1}
        assert prog.valid_until == b.valid_until and prog.org_unit_id == w.a
        notes = db.scalars(
            select(ProgrammeTransition.note).where(ProgrammeTransition.programme_id == prog.id)
        )
        assert f"priority bulletin {b.id}, placed at the head of the slot" in list(notes)
        assert db.scalar(select(OutboxEvent.kind).where(OutboxEvent.kind == "replan_needed"))
        doc = device_document(db, w.dev1)
        at_17 = [i for i in doc.items if i.start == SLOT_17]
        assert {i.programme_id for i in at_17} == {prog.id, own}
        assert play_order(doc.items) == [prog.id, own]
        # Village A1's device gets the bulletin too; commune B's device gets nothing.
        assert [i.programme_id for i in device_document(db, w.dev2).items] == [prog.id]
        assert device_document(db, w.dev3).items == ()
        db.commit()


def test_a_new_priority_bulletin_takes_the_head_and_the_others_move_down(
    place_db: Place,
) -> None:
    w = place_db
    with w.factory() as db:
        own = own_programme(db, w, start=SLOT_17)
        first, (d1,) = bulletin(db, w, level="priority", clip_id=w.clip60, units=[w.a])
        place(db, bulletin=first, deliveries=[d1], now=NOW)
        second, (d2,) = bulletin(db, w, level="priority", clip_id=w.clip30, units=[w.a])
        place(db, bulletin=second, deliveries=[d2], now=NOW + timedelta(minutes=5))
        db.commit()
        assert (d2.slot_position, d2.first_start) == (0, SLOT_17)
        assert (d1.slot_position, d1.first_start) == (1, SLOT_17 + timedelta(seconds=30))
        p1, p2 = d1.programme_id, d2.programme_id
        doc = device_document(db, w.dev1)
        assert play_order(doc.items) == [p2, p1, own]
        # The commune puts the first one back at the head.
        moved = slot_service.move_delivery(
            db, actor=actor_of(db, w.admin_a), delivery_id=d1.id, position=0,
            now=NOW + timedelta(hours=1),
        )  # fmt: skip
        db.commit()
        assert [x.id for x in moved] == [d1.id, d2.id]
        assert (d1.slot_position, d1.first_start) == (0, SLOT_17)
        assert (d2.slot_position, d2.first_start) == (1, SLOT_17 + timedelta(seconds=60))
        doc = device_document(db, w.dev1, now=NOW + timedelta(hours=1))
        assert play_order(doc.items) == [p1, p2, own]
        audit = db.scalar(select(AuditEntry).where(AuditEntry.action == "bulletin.reorder"))
        assert audit is not None and audit.object_id == str(d1.id)
        # A position past the end puts it last; it is never dropped.
        slot_service.move_delivery(
            db, actor=actor_of(db, w.admin_a), delivery_id=d1.id, position=1000,
            now=NOW + timedelta(hours=1),
        )  # fmt: skip
        assert [d2.slot_position, d1.slot_position] == [0, 1]
        assert db.get(Programme, p1).status == "approved"  # type: ignore[union-attr]


def test_reorder_is_refused_for_foreign_begun_and_non_priority_deliveries(
    place_db: Place,
) -> None:
    w = place_db
    with w.factory() as db:
        b, (d,) = bulletin(db, w, level="priority", clip_id=w.clip60, units=[w.a])
        place(db, bulletin=b, deliveries=[d], now=NOW)
        normal, (dn,) = bulletin(db, w, level="normal", clip_id=w.clip60, units=[w.a])
        place(db, bulletin=normal, deliveries=[dn], now=NOW)
        db.commit()
        assert dn.status == DELIVERED and dn.programme_id is None  # normal: the commune decides
        with pytest.raises(DomainError) as foreign:
            slot_service.move_delivery(
                db, actor=actor_of(db, w.admin_b), delivery_id=d.id, position=0, now=NOW
            )
        assert foreign.value.status_code == 404
        with pytest.raises(DomainError) as begun:
            slot_service.move_delivery(
                db, actor=actor_of(db, w.admin_a), delivery_id=d.id, position=0, now=SLOT_17
            )
        assert begun.value.status_code == 409
        with pytest.raises(DomainError) as not_priority:
            slot_service.move_delivery(
                db, actor=actor_of(db, w.admin_a), delivery_id=dn.id, position=0, now=NOW
            )
        assert not_priority.value.status_code == 409


def test_without_a_slot_inside_validity_it_plays_at_valid_from_with_a_warning(
    place_db: Place,
) -> None:
    w = place_db
    with w.factory() as db:
        # Valid from 08:00 to 16:00 local: no 05:00 or 17:00 slot inside.
        start, until = NOW + timedelta(hours=1), NOW + timedelta(hours=9)
        b, (d, db_) = bulletin(
            db, w, level="priority", clip_id=w.clip60, units=[w.a, w.b],
            valid_from=start, valid_until=until,
        )  # fmt: skip
        place(db, bulletin=b, deliveries=[d, db_], now=NOW)
        db.commit()
        assert (d.first_start, d.warning, d.slot_position) == (start, NO_SLOT_WARNING, 0)
        # Commune B has no slots at all: the same.
        assert (db_.first_start, db_.warning) == (start, NO_SLOT_WARNING)
        prog = db.get(Programme, d.programme_id)
        assert prog is not None and prog.start == start
        doc = device_document(db, w.dev3)
        assert [(i.programme_id, i.start) for i in doc.items] == [(db_.programme_id, start)]


def test_the_slot_is_chosen_in_local_time_and_on_its_weekdays(place_db: Place) -> None:
    w = place_db
    with w.factory() as db:
        # Saturday 18:00 local: the next slot is Monday 05:00 (no Sunday slot) = Sunday 22:00 UTC.
        saturday_18 = datetime(2031, 3, 8, 11, 0, tzinfo=UTC)
        b, (d,) = bulletin(
            db, w, level="priority", clip_id=w.clip60, units=[w.a],
            valid_from=saturday_18, valid_until=saturday_18 + timedelta(days=3),
        )  # fmt: skip
        place(db, bulletin=b, deliveries=[d], now=saturday_18)
        assert d.first_start == datetime(2031, 3, 9, 22, 0, tzinfo=UTC)
        assert d.warning == ""


# -- emergency ---------------------------------------------------------------------------------


def _starts(doc: ScheduleDocument, programme_ids: set[int]) -> list[datetime]:
    return [i.start for i in doc.items if i.programme_id in programme_ids]


def test_emergency_plays_at_once_on_every_zone_of_the_commune(place_db: Place) -> None:
    w = place_db
    now = NOW + timedelta(seconds=12, microseconds=345)
    with w.factory() as db:
        b, (d,) = bulletin(
            db, w, level="emergency", clip_id=w.clip30, units=[w.a], valid_from=now,
            valid_until=now + timedelta(hours=3),
        )  # fmt: skip
        place(db, bulletin=b, deliveries=[d], now=now)
        db.commit()
        at_once = now.replace(microsecond=0)
        assert (d.status, d.first_start, d.clusters_targeted) == (SCHEDULED, at_once, 2)
        progs = set(db.scalars(select(Programme.id).where(Programme.bulletin_id == b.id)))
        assert progs == {d.programme_id}
        prog = db.get(Programme, d.programme_id)
        assert prog is not None and (prog.priority, prog.status) == ("emergency", "approved")
        for device in (w.dev1, w.dev2):
            assert _starts(device_document(db, device, now), progs) == [at_once]
        assert _starts(device_document(db, w.dev3, now), progs) == []


@pytest.mark.parametrize("every", [30, 45, 7])
def test_emergency_repeats_every_n_minutes_and_never_after_valid_until(
    place_db: Place, every: int
) -> None:
    w = place_db
    # 22:50 local: the repeats cross midnight.
    now = datetime(2031, 3, 3, 15, 50, 20, tzinfo=UTC)
    until = now + timedelta(hours=5)
    with w.factory() as db:
        b, (d,) = bulletin(
            db, w, level="emergency", clip_id=w.clip30, units=[w.a], valid_from=now,
            valid_until=until, repeat_every_min=every,
        )  # fmt: skip
        place(db, bulletin=b, deliveries=[d], now=now)
        db.commit()
        progs = set(db.scalars(select(Programme.id).where(Programme.bulletin_id == b.id)))
        assert d.programme_id in progs
        starts = _starts(device_document(db, w.dev2, now), progs)
        step = timedelta(minutes=every)
        expected = [now + k * step for k in range(10_000) if now + k * step < until]
        assert starts == expected
        assert all(s < until for s in starts)


def test_repeat_rules_cover_the_cycle_with_few_hourly_rules() -> None:
    start = datetime(2031, 3, 3, 10, 17, 5)
    assert repeat_rules(start, 30) == [(start, "FREQ=HOURLY;INTERVAL=1;BYMINUTE=17,47;BYSECOND=5")]
    assert [r for _, r in repeat_rules(start, 45)] == [
        "FREQ=HOURLY;INTERVAL=3;BYMINUTE=17;BYSECOND=5",
        "FREQ=HOURLY;INTERVAL=3;BYMINUTE=2,47;BYSECOND=5",
        "FREQ=HOURLY;INTERVAL=3;BYMINUTE=32;BYSECOND=5",
    ]
    assert repeat_rules(start, 1440) == [(start, "FREQ=HOURLY;INTERVAL=24;BYMINUTE=17;BYSECOND=5")]
    # A 7-hour cycle begun mid-hour touches 8 clock hours: 8 rules (at most 61 for any n).
    assert len(repeat_rules(start, 7)) == 8


def test_placing_twice_does_not_place_again(place_db: Place) -> None:
    w = place_db
    with w.factory() as db:
        b, ds = bulletin(db, w, level="emergency", clip_id=w.clip30, units=[w.a])
        place(db, bulletin=b, deliveries=ds, now=NOW)
        place(db, bulletin=b, deliveries=ds, now=NOW)
        count = len(list(db.scalars(select(Programme.id).where(Programme.bulletin_id == b.id))))
        assert count == 1
