"""E-board content in the schedule document: only for devices with a screen, hashed, bounded."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schedules import (
    DISPLAY_TEXT_MAX,
    PRESETS,
    DisplayInfo,
    DisplayText,
    ProgrammeSpec,
    ScheduleCompiler,
    ScheduleDocument,
)
from tests.schedules.factories import clip, recurring, utc

WEEK_START = utc(2031, 3, 2, 17)  # Monday 00:00 in Vietnam
WEEK_END = utc(2031, 3, 9, 17)


def _daily(programme_id: int, text: str, *, zones: tuple[int, ...] = (1,)) -> ProgrammeSpec:
    """A programme every day at 06:00 with an e-board text."""
    return recurring(programme_id, PRESETS["daily_0600"].rrule, zones=zones).model_copy(
        update={"display_text": text, "title": f"Bản tin {programme_id}"}
    )


def _compile(
    programmes: list[ProgrammeSpec], unit: str | None = "Xã An Bình", zones: tuple[int, ...] = (1,)
) -> ScheduleDocument:
    compiler = ScheduleCompiler(programmes=programmes, window_start=WEEK_START, window_end=WEEK_END)
    return compiler.compile(
        device_id="bang-01", zone_ids=zones, version=1, generated_at=WEEK_START,
        display_unit=unit,
    )  # fmt: skip


def test_a_horn_only_device_gets_no_display_part_in_its_json() -> None:
    doc = _compile([_daily(1, "Lịch tiêm phòng cho trẻ em.")], unit=None)
    assert doc.display is None
    assert len(doc.items) == 7
    sent = json.loads(doc.model_dump_json())
    assert "display" not in sent  # agents that predate e-boards read it as before
    assert doc.display_text(1) is None


def test_an_eboard_gets_each_programmes_text_once_with_its_unit() -> None:
    daily = _daily(1, "Lịch tiêm phòng cho trẻ em.\nMang theo sổ tiêm.")
    other = _daily(2, "")
    elsewhere = _daily(3, "Không thuộc vùng này.", zones=(9,))
    doc = _compile([daily, other, elsewhere])
    assert doc.display is not None
    assert doc.display.unit_name == "Xã An Bình"
    # Fourteen items (two programmes every day), two texts: one per programme in the items.
    assert len(doc.items) == 14
    assert [t.programme_id for t in doc.display.texts] == [1, 2]
    first = doc.display_text(1)
    assert first is not None and first.title == "Bản tin 1"
    assert first.text == "Lịch tiêm phòng cho trẻ em.\nMang theo sổ tiêm."
    second = doc.display_text(2)
    assert second is not None and second.text == ""
    assert doc.display_text(3) is None  # not in this device's zones
    sent = json.loads(doc.model_dump_json())
    assert sent["display"]["unit_name"] == "Xã An Bình"
    assert len(sent["display"]["texts"]) == 2


def test_the_hash_follows_the_text_and_nothing_else() -> None:
    base = _compile([_daily(1, "Thông báo A"), _daily(2, "Thông báo B")])
    same = _compile([_daily(1, "Thông báo A"), _daily(2, "Thông báo B")])
    assert same.content_hash() == base.content_hash()
    edited = _compile([_daily(1, "Thông báo A (sửa)"), _daily(2, "Thông báo B")])
    assert edited.items == base.items  # same playbacks…
    assert edited.content_hash() != base.content_hash()  # …but the board must be told
    renamed = _compile([_daily(1, "Thông báo A"), _daily(2, "Thông báo B")], unit="Xã Khác")
    assert renamed.content_hash() != base.content_hash()
    horns = _compile([_daily(1, "Thông báo A"), _daily(2, "Thông báo B")], unit=None)
    horns_edited = _compile([_daily(1, "Khác hẳn"), _daily(2, "Thông báo B")], unit=None)
    # A horn-only device is not republished for a text it never receives.
    assert horns.content_hash() == horns_edited.content_hash()
    assert horns.content_hash() != base.content_hash()


def test_a_round_trip_through_json_keeps_the_document_and_its_hash() -> None:
    doc = _compile([_daily(1, "Dòng một\nDòng hai <b>không phải HTML</b> & “ngoặc”")])
    back = ScheduleDocument.model_validate_json(doc.model_dump_json())
    assert back.model_dump() == doc.model_dump()  # (== also compares the cached hash)
    assert back.content_hash() == doc.content_hash()
    plain = _compile([_daily(1, "x")], unit=None)
    again = ScheduleDocument.model_validate(json.loads(plain.model_dump_json()))
    assert again.display is None and again.content_hash() == plain.content_hash()


def test_display_text_is_bounded() -> None:
    at_limit = _daily(1, "a" * DISPLAY_TEXT_MAX)
    assert len(at_limit.display_text) == DISPLAY_TEXT_MAX
    with pytest.raises(ValidationError, match="display_text"):
        ProgrammeSpec(
            id=1, title="Quá dài", display_text="a" * (DISPLAY_TEXT_MAX + 1),
            items=[clip("x")], start=utc(2031, 3, 4), zone_ids=[1],
        )  # fmt: skip
    with pytest.raises(ValidationError):
        DisplayText(programme_id=1, title="t", text="a" * (DISPLAY_TEXT_MAX + 1))
    with pytest.raises(ValidationError):
        DisplayInfo(unit_name="")
    with pytest.raises(ValidationError):
        DisplayInfo(unit_name="x" * 201)


def test_a_document_lists_each_programmes_text_once() -> None:
    doc = _compile([_daily(1, "A")])
    assert doc.display is not None
    twice = doc.display.model_copy(update={"texts": doc.display.texts * 2})
    data = json.loads(doc.model_dump_json())
    data["display"] = json.loads(twice.model_dump_json())
    with pytest.raises(ValidationError, match="each programme once"):
        ScheduleDocument.model_validate(data)


def test_generated_at_does_not_change_the_hash_of_an_eboard_document() -> None:
    compiler = ScheduleCompiler(
        programmes=[_daily(1, "A")], window_start=WEEK_START, window_end=WEEK_END
    )
    first = compiler.compile(
        device_id="b", zone_ids=[1], version=1, generated_at=WEEK_START, display_unit="Xã A"
    )
    later = compiler.compile(
        device_id="b", zone_ids=[1], version=2, generated_at=datetime(2031, 3, 3, tzinfo=UTC),
        display_unit="Xã A",
    )  # fmt: skip
    assert first.content_hash() == later.content_hash()
    assert later.version == 2 and later.display == first.display
