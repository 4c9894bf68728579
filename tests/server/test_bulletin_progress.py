"""Delivery progress from real proof-of-play rows: played (clusters played / targeted), expired."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from server.bulletins.models import (
    DELIVERED,
    EXPIRED,
    PLAYED,
    SCHEDULED,
    SEEN,
    BulletinDelivery,
)
from server.bulletins.placement import place
from server.bulletins.progress import update_deliveries
from server.planner import Planner
from server.plays.models import PlayRecord
from server.programmes.models import Programme
from tests.server.test_bulletin_placement import NOW, SLOT_17, Place, bulletin, place_db

__all__ = ["place_db"]  # the fixture, imported for pytest
_seq = itertools.count(1)


def proof(
    db: Session, *, device_id: int, programme_id: int, start: datetime, outcome: str = "played"
) -> None:
    """A device's proof-of-play row, as the bridge stores it."""
    db.add(
        PlayRecord(
            device_id=device_id, seq=next(_seq), item_id=f"{programme_id}@{start:%Y%m%dT%H%M%SZ}",
            programme_id=programme_id, priority="priority", planned_start=start,
            actual_start=start + timedelta(milliseconds=40), ended_at=start + timedelta(minutes=1),
            outcome=outcome,
        )
    )  # fmt: skip
    db.flush()


def test_a_priority_delivery_becomes_played_as_clusters_report_plays(place_db: Place) -> None:
    w = place_db
    with w.factory() as db:
        b, (d,) = bulletin(db, w, level="priority", clip_id=w.clip60, units=[w.a])
        place(db, bulletin=b, deliveries=[d], now=NOW)
        assert d.programme_id is not None and d.clusters_targeted == 2
        assert update_deliveries(db, now=NOW) == 0
        assert d.status == SCHEDULED
        # Device 2 missed it, and a play of another programme does not count.
        proof(db, device_id=w.dev2, programme_id=d.programme_id, start=SLOT_17, outcome="missed")
        proof(db, device_id=w.dev3, programme_id=d.programme_id + 1000, start=SLOT_17)
        assert update_deliveries(db, now=SLOT_17 + timedelta(minutes=2)) == 0
        assert d.status == SCHEDULED and d.clusters_played == 0
        proof(db, device_id=w.dev1, programme_id=d.programme_id, start=SLOT_17)
        later = SLOT_17 + timedelta(minutes=3)
        assert update_deliveries(db, now=later) == 1
        assert (d.status, d.status_at, d.clusters_played, d.clusters_targeted) == (
            PLAYED, later, 1, 2,
        )  # fmt: skip
        assert d.first_played_at == d.last_played_at == SLOT_17 + timedelta(milliseconds=40)
        # The second cluster plays it the next day (a repeat): counted once, last played moves.
        next_day = SLOT_17 + timedelta(days=1)
        proof(db, device_id=w.dev2, programme_id=d.programme_id, start=next_day)
        proof(db, device_id=w.dev1, programme_id=d.programme_id, start=next_day)
        assert update_deliveries(db, now=next_day + timedelta(minutes=3)) == 1
        assert d.clusters_played == 2
        assert d.first_played_at == SLOT_17 + timedelta(milliseconds=40)
        assert d.last_played_at == next_day + timedelta(milliseconds=40)
        assert update_deliveries(db, now=next_day + timedelta(minutes=4)) == 0


def test_emergency_plays_of_every_rule_count_for_the_one_delivery(place_db: Place) -> None:
    w = place_db
    with w.factory() as db:
        b, (d,) = bulletin(
            db, w, level="emergency", clip_id=w.clip30, units=[w.a], repeat_every_min=45
        )
        place(db, bulletin=b, deliveries=[d], now=NOW)
        others = [
            p.id
            for p in db.query(Programme).filter(Programme.bulletin_id == b.id)
            if p.id != d.programme_id
        ]
        assert others  # 45 minutes: several hourly rules
        proof(db, device_id=w.dev2, programme_id=others[0], start=NOW + timedelta(minutes=45))
        assert update_deliveries(db, now=NOW + timedelta(hours=1)) == 1
        assert (d.status, d.clusters_played) == (PLAYED, 1)


def test_unplayed_deliveries_expire_when_validity_ends(place_db: Place) -> None:
    w = place_db
    until = NOW + timedelta(hours=2)
    with w.factory() as db:
        _normal, (waiting, seen) = bulletin(
            db, w, level="normal", clip_id=w.clip60, units=[w.a, w.b], valid_until=until
        )
        seen.status = SEEN
        prio, (scheduled,) = bulletin(
            db, w, level="priority", clip_id=w.clip60, units=[w.a], valid_until=until
        )
        place(db, bulletin=prio, deliveries=[scheduled], now=NOW)
        _later, (open_,) = bulletin(db, w, level="normal", clip_id=w.clip60, units=[w.a])
        db.flush()
        assert update_deliveries(db, now=until - timedelta(seconds=1)) == 0
        assert (waiting.status, seen.status, scheduled.status) == (DELIVERED, SEEN, SCHEDULED)
        assert update_deliveries(db, now=until) == 3
        assert (waiting.status, seen.status, scheduled.status) == (EXPIRED, EXPIRED, EXPIRED)
        assert waiting.status_at == until
        assert open_.status == DELIVERED  # still valid
        # A play that happened before the end, reported late (the device was offline): played.
        assert scheduled.programme_id is not None
        proof(
            db,
            device_id=w.dev1,
            programme_id=scheduled.programme_id,
            start=until - timedelta(minutes=5),
        )
        assert update_deliveries(db, now=until + timedelta(hours=1)) == 1
        assert (scheduled.status, scheduled.clusters_played) == (PLAYED, 1)


class _NoPublisher:
    def publish_schedule(self, document: object) -> None:
        raise AssertionError("progress publishes nothing")

    def publish_zone_clip(self, zone_id: int, sha256: str) -> None:
        raise AssertionError("progress publishes nothing")


def test_the_planner_process_runs_progress_and_only_while_it_leads(place_db: Place) -> None:
    w = place_db
    with w.factory() as db:
        _b, (d,) = bulletin(
            db,
            w,
            level="normal",
            clip_id=w.clip60,
            units=[w.a],
            valid_until=NOW + timedelta(hours=1),
        )
        db.commit()
        delivery_id = d.id
    engine = w.factory.kw["bind"]
    planner = Planner(
        engine=engine, session_factory=w.factory, publisher=_NoPublisher(),
        clock=lambda: NOW + timedelta(hours=2),
    )  # fmt: skip
    planner.bulletin_progress()  # not the leader (no lock taken): nothing happens
    with w.factory() as db:
        assert db.get(BulletinDelivery, delivery_id).status == DELIVERED  # type: ignore[union-attr]
    assert planner.lock.acquire()
    try:
        planner.bulletin_progress()
    finally:
        planner.lock.release()
    with w.factory() as db:
        assert db.get(BulletinDelivery, delivery_id).status == EXPIRED  # type: ignore[union-attr]
