"""Expansion and per-device compilation."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from schedules import (
    PRESETS,
    ScheduleCompiler,
    compile_device_schedule,
    expand,
    expand_programme,
)
from tests.schedules.factories import one_off, recurring, utc

WEEK_START = utc(2025, 6, 1, 17)  # Monday 2 June 00:00 in Hà Nội
WEEK_END = WEEK_START + timedelta(days=7)


def test_one_off_inside_and_outside_the_window() -> None:
    inside = one_off(1, utc(2025, 6, 3, 2))
    outside = one_off(2, WEEK_END)  # the window is half-open
    items = expand(programmes=[inside, outside], window_start=WEEK_START, window_end=WEEK_END)
    assert [i.programme_id for i in items] == [1]
    assert items[0].item_id == "1@20250603T020000Z"
    assert items[0].end - items[0].start == timedelta(seconds=60)


def test_playback_running_at_window_start_is_included() -> None:
    running = one_off(1, WEEK_START - timedelta(seconds=30), seconds=60)
    finished = one_off(2, WEEK_START - timedelta(seconds=60), seconds=60)
    # Daily at 23:59 local = 16:59 UTC, two minutes long: running at 17:00 UTC.
    recurring_running = recurring(
        3, "FREQ=DAILY", dtstart=datetime(2025, 5, 1, 23, 59), seconds=120
    )
    items = expand(
        programmes=[running, finished, recurring_running],
        window_start=WEEK_START,
        window_end=WEEK_END,
    )
    first = [i for i in items if i.start < WEEK_START]
    assert {i.programme_id for i in first} == {1, 3}
    assert all(i.end > WEEK_START for i in first)


def test_item_carries_programme_clips_priority_and_volume() -> None:
    programme = one_off(1, utc(2025, 6, 3)).model_copy(update={"volume": 40})
    (produced,) = expand_programme(programme, window_start=WEEK_START, window_end=WEEK_END)
    assert produced.clips == programme.items
    assert produced.priority is programme.priority
    assert produced.volume == 40


def test_item_ids_are_stable_across_recompiles_with_shifted_windows() -> None:
    programme = recurring(7, PRESETS["daily_0500_1700"].rrule)
    first = expand(programmes=[programme], window_start=WEEK_START, window_end=WEEK_END)
    shifted = expand(
        programmes=[programme],
        window_start=WEEK_START + timedelta(days=1),
        window_end=WEEK_END + timedelta(days=1),
    )
    assert len(first) == len(shifted) == 14
    shared = {i.item_id: i for i in first}
    overlap = [i for i in shifted if i.item_id in shared]
    assert len(overlap) == 12
    assert all(shared[i.item_id] == i for i in overlap)


def test_expansion_is_sorted_by_start() -> None:
    programmes = [
        recurring(1, PRESETS["daily_0600"].rrule),
        one_off(2, utc(2025, 6, 4, 12)),
        recurring(3, PRESETS["weekly_monday_0700"].rrule),
    ]
    items = expand(programmes=programmes, window_start=WEEK_START, window_end=WEEK_END)
    assert [i.start for i in items] == sorted(i.start for i in items)
    assert len(items) == 7 + 1 + 1


def test_compile_selects_programmes_by_zone() -> None:
    programmes = [
        one_off(1, utc(2025, 6, 3), zones=[1]),
        one_off(2, utc(2025, 6, 4), zones=[2]),
        one_off(3, utc(2025, 6, 5), zones=[2, 3]),
    ]
    document = compile_device_schedule(
        device_id="dev-a",
        zone_ids={2},
        programmes=programmes,
        window_start=WEEK_START,
        window_end=WEEK_END,
        version=3,
        generated_at=WEEK_START,
    )
    assert [i.programme_id for i in document.items] == [2, 3]
    assert document.device_id == "dev-a"
    assert document.version == 3
    assert (document.horizon_start, document.horizon_end) == (WEEK_START, WEEK_END)
    assert {c.sha256 for c in document.clips} == {c.sha256 for i in document.items for c in i.clips}


def test_device_in_two_zones_gets_each_item_once() -> None:
    shared = one_off(1, utc(2025, 6, 3), zones=[1, 2])
    only_one = one_off(2, utc(2025, 6, 4), zones=[1])
    only_two = recurring(3, PRESETS["weekly_monday_0700"].rrule, zones=[2])
    compiler = ScheduleCompiler(
        programmes=[shared, only_one, only_two], window_start=WEEK_START, window_end=WEEK_END
    )
    document = compiler.compile(
        device_id="dev-b", zone_ids=[1, 2], version=1, generated_at=WEEK_START
    )
    assert [i.programme_id for i in document.items] == [3, 1, 2]
    assert len(document.clips) == 3
    nothing = compiler.compile(device_id="dev-c", zone_ids=[9], version=1, generated_at=WEEK_START)
    assert nothing.items == () and nothing.clips == ()


def test_devices_sharing_zones_get_equal_content_and_their_own_identity() -> None:
    compiler = ScheduleCompiler(
        programmes=[recurring(1, PRESETS["daily_0600"].rrule, zones=[4])],
        window_start=WEEK_START,
        window_end=WEEK_END,
    )
    a = compiler.compile(device_id="a", zone_ids={4}, version=1, generated_at=WEEK_START)
    b = compiler.compile(device_id="b", zone_ids=[4], version=5, generated_at=WEEK_START)
    assert (a.device_id, a.version, b.device_id, b.version) == ("a", 1, "b", 5)
    assert a.items == b.items
    assert a.content_hash() == b.content_hash()


def test_recompiling_unchanged_programmes_gives_the_same_hash() -> None:
    programmes = [recurring(1, PRESETS["mon_sat_0500_1700"].rrule), one_off(2, utc(2025, 6, 3))]

    def build(version: int) -> str:
        document = compile_device_schedule(
            device_id="d",
            zone_ids={1},
            programmes=programmes,
            window_start=WEEK_START,
            window_end=WEEK_END,
            version=version,
            generated_at=WEEK_START + timedelta(minutes=version),
        )
        return document.content_hash()

    assert build(1) == build(2)
    changed = [programmes[0], one_off(2, utc(2025, 6, 3, 0, 5))]
    moved = compile_device_schedule(
        device_id="d",
        zone_ids={1},
        programmes=changed,
        window_start=WEEK_START,
        window_end=WEEK_END,
        version=3,
        generated_at=WEEK_START,
    )
    assert moved.content_hash() != build(1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device_id": ""}, "device_id must not be empty"),
        ({"version": 0}, "version must be at least 1"),
    ],
)
def test_compile_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    compiler = ScheduleCompiler(programmes=[], window_start=WEEK_START, window_end=WEEK_END)
    arguments: dict[str, object] = {
        "device_id": "d",
        "zone_ids": [1],
        "version": 1,
        "generated_at": WEEK_START,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        compiler.compile(**arguments)  # type: ignore[arg-type]


def test_compiler_rejects_an_empty_window() -> None:
    with pytest.raises(ValueError, match="window_end must be later"):
        ScheduleCompiler(programmes=[], window_start=WEEK_END, window_end=WEEK_START)
