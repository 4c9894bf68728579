"""Models: programme validation, playback items, schedule documents and their hash."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from schedules import ClipRef, Priority, ProgrammeSpec, ScheduleDocument, clip_manifest
from tests.schedules.factories import clip, item, one_off, utc

SHA = "a" * 64


def _programme(**overrides: Any) -> ProgrammeSpec:
    fields: dict[str, Any] = {
        "id": 1,
        "title": "Bản tin sáng",
        "items": [{"sha256": SHA, "duration_s": 300}],
        "start": utc(2025, 6, 1, 22),
        "zone_ids": [3],
    }
    fields.update(overrides)
    return ProgrammeSpec.model_validate(fields)


def test_priority_rank_orders_emergency_over_priority_over_normal() -> None:
    assert Priority.EMERGENCY.rank > Priority.PRIORITY.rank > Priority.NORMAL.rank
    assert Priority.EMERGENCY.outranks(Priority.PRIORITY)
    assert not Priority.NORMAL.outranks(Priority.NORMAL)
    assert Priority("emergency") is Priority.EMERGENCY


def test_one_off_programme_defaults() -> None:
    programme = _programme()
    assert programme.priority is Priority.NORMAL
    assert not programme.is_recurring
    assert programme.duration == timedelta(minutes=5)


def test_recurring_programme_normalises_rule_and_stores_local_wall_time() -> None:
    programme = _programme(start=None, rrule="freq=daily;byhour=5", dtstart=utc(2025, 1, 1, 0))
    assert programme.is_recurring
    assert programme.rrule == "FREQ=DAILY;BYHOUR=5"
    assert programme.dtstart == datetime(2025, 1, 1, 7)  # 00:00 UTC is 07:00 in Hà Nội


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rrule": "FREQ=DAILY", "dtstart": datetime(2025, 1, 1)}, "not both"),
        ({"start": None}, "give start (one-off) or rrule and dtstart"),
        ({"start": None, "rrule": "FREQ=DAILY"}, "needs both rrule and dtstart"),
        ({"start": None, "rrule": "FREQ=SOMETIMES", "dtstart": datetime(2025, 1, 1)},
         "invalid recurrence rule"),
        ({"items": []}, "items"),
        ({"items": [{"sha256": "A" * 64, "duration_s": 3}]}, "sha256"),
        ({"items": [{"sha256": "ab", "duration_s": 3}]}, "sha256"),
        ({"items": [{"sha256": SHA, "duration_s": 0}]}, "duration_s"),
        ({"items": [{"sha256": SHA, "duration_s": float("inf")}]}, "finite"),
        ({"start": datetime(2025, 6, 1, 5)}, "must be timezone-aware"),
        ({"volume": 101}, "volume"),
        ({"zone_ids": []}, "zone_ids"),
        ({"valid_from": utc(2025, 6, 2), "valid_until": utc(2025, 6, 1)}, "valid_until must be"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_invalid_programmes_are_rejected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        _programme(**overrides)


def test_programme_zone_ids_are_unique_and_sorted() -> None:
    assert _programme(zone_ids=[5, 2, 5]).zone_ids == (2, 5)


def test_programme_is_frozen() -> None:
    programme = _programme()
    with pytest.raises(ValidationError, match="frozen"):
        programme.title = "other"  # type: ignore[misc]


def test_playback_item_end_must_follow_start() -> None:
    good = item(1, utc(2025, 6, 1))
    with pytest.raises(ValidationError, match="end must be later than start"):
        good.model_validate({**good.model_dump(), "end": good.start})


def _document(**overrides: Any) -> ScheduleDocument:
    items = overrides.pop("items", [item(2, utc(2025, 6, 2)), item(1, utc(2025, 6, 1))])
    fields: dict[str, Any] = {
        "device_id": "dev-1",
        "version": 1,
        "generated_at": utc(2025, 5, 31),
        "horizon_start": utc(2025, 6, 1),
        "horizon_end": utc(2025, 6, 8),
        "items": items,
        "clips": clip_manifest(items),
    }
    fields.update(overrides)
    return ScheduleDocument.model_validate(fields)


def test_document_sorts_items_by_start() -> None:
    document = _document()
    assert [i.programme_id for i in document.items] == [1, 2]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"version": 0}, "version"),
        ({"horizon_end": utc(2025, 6, 1)}, "horizon_end must be later"),
        ({"items": [item(1, utc(2025, 6, 1))] * 2}, "item_id values must be unique"),
        ({"clips": []}, "clips is missing 2 clip"),
        ({"clips": [clip("p1"), clip("p2"), clip("p1")]}, "each sha256 once"),
    ],
)
def test_invalid_documents_are_rejected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        _document(**overrides)


def test_content_hash_ignores_device_version_and_generation_time() -> None:
    first = _document()
    other = _document(device_id="dev-2", version=7, generated_at=utc(2025, 6, 1))
    assert first.content_hash() == other.content_hash()
    assert len(first.content_hash()) == 64


def test_content_hash_changes_with_items_or_clips() -> None:
    base = _document()
    louder = [i.model_copy(update={"volume": 90}) for i in base.items]
    assert _document(items=louder).content_hash() != base.content_hash()
    later = [item(1, utc(2025, 6, 1, 0, 1)), item(2, utc(2025, 6, 2))]
    assert _document(items=later).content_hash() != base.content_hash()
    sized = [ClipRef(sha256=c.sha256, duration_s=c.duration_s, size_bytes=10) for c in base.clips]
    assert _document(clips=sized).content_hash() != base.content_hash()


def test_content_hash_is_recomputed_after_a_copy_swaps_items() -> None:
    base = _document()
    before = base.content_hash()
    fewer = base.model_copy(update={"items": base.items[:1], "clips": base.clips[:1]})
    assert fewer.content_hash() != before
    assert base.content_hash() == before


def test_copy_of_an_item_with_an_update_drops_its_cached_json() -> None:
    original = item(1, utc(2025, 6, 1))
    assert b'"volume":null' in original.canonical_json()
    assert b'"volume":50' in original.model_copy(update={"volume": 50}).canonical_json()


def test_document_round_trips_through_json() -> None:
    document = _document()
    again = ScheduleDocument.model_validate_json(document.model_dump_json())
    assert again == document
    assert again.content_hash() == document.content_hash()


def test_one_off_factory_builds_valid_programme() -> None:
    assert one_off(9, utc(2025, 6, 1), seconds=30).duration == timedelta(seconds=30)
