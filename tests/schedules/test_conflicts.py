"""Planning conflicts between programmes of the same priority on a shared zone."""

from __future__ import annotations

from datetime import timedelta

from schedules import PRESETS, Priority, find_conflicts
from tests.schedules.factories import one_off, recurring, utc

START = utc(2025, 6, 1)
END = START + timedelta(days=7)


def test_same_priority_overlap_on_a_shared_zone_conflicts() -> None:
    candidate = one_off(1, utc(2025, 6, 2, 22, 0), seconds=600, zones=[1, 2, 3])
    other = one_off(2, utc(2025, 6, 2, 22, 5), seconds=600, zones=[3, 2, 9], title="Thông báo")
    (conflict,) = find_conflicts(
        candidate=candidate, others=[other], window_start=START, window_end=END
    )
    assert conflict.other_programme_id == 2
    assert conflict.other_title == "Thông báo"
    assert conflict.zone_ids == (2, 3)
    assert conflict.zone_id == 2
    assert conflict.first_overlap_start == utc(2025, 6, 2, 22, 5)
    assert conflict.first_overlap_end == utc(2025, 6, 2, 22, 10)
    assert "programme 2 'Thông báo'" in conflict.describe()


def test_recurring_against_one_off_reports_the_first_overlap() -> None:
    candidate = recurring(1, PRESETS["daily_0500_1700"].rrule, seconds=900)
    # 17:10 local on 4 June = 10:10 UTC, inside the 17:00 bulletin.
    other = one_off(2, utc(2025, 6, 4, 10, 10), seconds=60)
    earlier = one_off(3, utc(2025, 6, 3, 22, 14), seconds=120)  # inside 05:00 on 4 June
    conflicts = find_conflicts(
        candidate=candidate, others=[other, earlier], window_start=START, window_end=END
    )
    assert [c.other_programme_id for c in conflicts] == [3, 2]
    assert conflicts[0].first_overlap_start == utc(2025, 6, 3, 22, 14)
    assert conflicts[0].first_overlap_end == utc(2025, 6, 3, 22, 15)


def test_different_priorities_do_not_conflict() -> None:
    candidate = one_off(1, utc(2025, 6, 2), seconds=600, priority=Priority.NORMAL)
    emergency = one_off(2, utc(2025, 6, 2), seconds=600, priority=Priority.EMERGENCY)
    assert (
        find_conflicts(candidate=candidate, others=[emergency], window_start=START, window_end=END)
        == []
    )


def test_adjacent_programmes_do_not_conflict() -> None:
    candidate = one_off(1, utc(2025, 6, 2, 0, 0), seconds=600)
    after = one_off(2, utc(2025, 6, 2, 0, 10), seconds=600)
    before = one_off(3, utc(2025, 6, 1, 23, 50), seconds=600)
    assert (
        find_conflicts(
            candidate=candidate, others=[after, before], window_start=START, window_end=END
        )
        == []
    )


def test_no_shared_zone_means_no_conflict() -> None:
    candidate = one_off(1, utc(2025, 6, 2), seconds=600, zones=[1])
    elsewhere = one_off(2, utc(2025, 6, 2), seconds=600, zones=[2])
    assert (
        find_conflicts(candidate=candidate, others=[elsewhere], window_start=START, window_end=END)
        == []
    )


def test_the_stored_version_of_the_candidate_is_ignored() -> None:
    candidate = one_off(1, utc(2025, 6, 2), seconds=600)
    stored = one_off(1, utc(2025, 6, 2, 0, 1), seconds=600)
    assert (
        find_conflicts(candidate=candidate, others=[stored], window_start=START, window_end=END)
        == []
    )


def test_overlap_outside_the_window_is_not_reported() -> None:
    candidate = recurring(1, PRESETS["daily_0600"].rrule, seconds=600)
    later = one_off(2, END + timedelta(days=1, hours=-1), seconds=600)
    assert (
        find_conflicts(candidate=candidate, others=[later], window_start=START, window_end=END)
        == []
    )
