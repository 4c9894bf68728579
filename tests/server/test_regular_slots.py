"""A commune's regular broadcast slots: the next start in local time, and editing them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from loa_testkit.stack import Stack
from server.audit.models import AuditEntry
from server.bulletins import slot_service
from server.bulletins.slots import first_start, next_slot_start
from server.domain import DomainError
from tests.server.test_bulletin_placement import NOW, Place, actor_of, place_db

__all__ = ["place_db"]  # the fixture, imported for pytest

MON_SAT = [("05:00", "123456"), ("17:00", "123456")]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_the_next_slot_is_found_in_vietnamese_local_time() -> None:
    # Monday 07:00 local (00:00 UTC): 17:00 local is 10:00 UTC.
    assert first_start(MON_SAT, after=NOW, until=NOW + timedelta(days=7)) == utc(2031, 3, 3, 10)
    # Monday 04:00 local (Sunday 21:00 UTC): 05:00 local the same morning = Sunday 22:00 UTC.
    assert first_start(MON_SAT, after=utc(2031, 3, 2, 21), until=NOW) == utc(2031, 3, 2, 22)


def test_weekdays_are_respected() -> None:
    # Saturday 18:00 local: no Sunday slot, so Monday 05:00 local (Sunday 22:00 UTC).
    saturday_18 = utc(2031, 3, 8, 11)
    assert first_start(MON_SAT, after=saturday_18, until=saturday_18 + timedelta(days=5)) == utc(
        2031, 3, 9, 22
    )
    # A Sunday-only slot is found a week on.
    assert first_start([("09:30", "7")], after=NOW, until=NOW + timedelta(days=30)) == utc(
        2031, 3, 9, 2, 30
    )


def test_the_bounds_are_at_or_after_and_strictly_before() -> None:
    slot = utc(2031, 3, 3, 10)
    assert first_start(MON_SAT, after=slot, until=slot + timedelta(minutes=1)) == slot
    assert first_start(MON_SAT, after=NOW, until=slot) is None  # until is exclusive
    after = slot + timedelta(seconds=1)  # just missed: the next is Tuesday 05:00 local
    assert first_start(MON_SAT, after=after, until=after + timedelta(days=1)) == utc(2031, 3, 3, 22)


def test_no_slot_at_all_or_none_inside_the_span() -> None:
    assert first_start([], after=NOW, until=NOW + timedelta(days=30)) is None
    assert first_start(MON_SAT, after=NOW, until=NOW + timedelta(hours=9)) is None
    assert first_start(MON_SAT, after=NOW, until=NOW) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        first_start(MON_SAT, after=NOW.replace(tzinfo=None), until=NOW)


def test_next_slot_start_reads_the_communes_own_slots(place_db: Place) -> None:
    w = place_db
    with w.factory() as db:
        span = {"after": NOW, "until": NOW + timedelta(days=3)}
        assert next_slot_start(db, org_unit_id=w.a, **span) == utc(2031, 3, 3, 10)
        assert next_slot_start(db, org_unit_id=w.b, **span) is None
        assert next_slot_start(db, org_unit_id=w.a1, **span) is None  # the village has none


def test_replacing_slots_checks_reach_and_duplicates_and_is_audited(place_db: Place) -> None:
    w = place_db
    with w.factory() as db:
        actor = actor_of(db, w.admin_a)
        stored = slot_service.replace_slots(
            db, actor=actor, unit_id=w.a, slots=[("06:30", "1357")], now=NOW
        )
        assert [(s.start_time, s.weekdays) for s in stored] == [("06:30", "1357")]
        assert [s.start_time for s in slot_service.list_slots(db, actor=actor, unit_id=w.a)] == [
            "06:30"
        ]
        entry = db.scalar(select(AuditEntry).where(AuditEntry.action == "bulletin.slots"))
        assert entry is not None and entry.object_id == str(w.a)
        assert entry.details == {
            "before": ["05:00 123456", "17:00 123456"],
            "after": ["06:30 1357"],
        }
        with pytest.raises(DomainError) as twice:
            slot_service.replace_slots(
                db, actor=actor, unit_id=w.a, slots=[("06:30", "1"), ("06:30", "2")], now=NOW
            )
        assert twice.value.status_code == 422 and "06:30" in str(twice.value.detail)
        with pytest.raises(DomainError) as foreign_read:
            slot_service.list_slots(db, actor=actor, unit_id=w.b)
        with pytest.raises(DomainError) as foreign_write:
            slot_service.replace_slots(db, actor=actor, unit_id=w.b, slots=[], now=NOW)
        assert foreign_read.value.status_code == foreign_write.value.status_code == 404


def test_the_slots_api_replaces_lists_and_bounds_the_list(api: Stack) -> None:
    h = api.headers
    unit = api.client.post(
        "/api/v1/org-units", json={"name": "Xã Thử", "kind": "commune"}, headers=h
    ).json()["id"]
    url = f"/api/v1/org-units/{unit}/slots"
    assert api.client.get(url, headers=h).json() == []  # no default slots
    body = {"slots": [{"start_time": "17:00"}, {"start_time": "05:00", "weekdays": "654321"}]}
    r = api.client.put(url, json=body, headers=h)
    assert r.status_code == 200, r.text
    got = [(s["start_time"], s["weekdays"]) for s in api.client.get(url, headers=h).json()]
    assert got == [("05:00", "123456"), ("17:00", "123456")]
    bad_bodies = [
        {"slots": [{"start_time": f"{h:02d}:00"} for h in range(13)]},  # more than 12
        {"slots": [{"start_time": "24:00"}]},
        {"slots": [{"start_time": "5:00"}]},
        {"slots": [{"start_time": "05:00", "weekdays": ""}]},
        {"slots": [{"start_time": "05:00", "weekdays": "8"}]},
        {"slots": [{"start_time": "05:00", "weekdays": "11"}]},
    ]
    for bad in bad_bodies:
        r = api.client.put(url, json=bad, headers=h)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"]
    assert len(api.client.get(url, headers=h).json()) == 2  # nothing half-changed
    assert api.client.put(url, json={"slots": []}, headers=h).json() == []
