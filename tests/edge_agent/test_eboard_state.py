"""The board's pure state (now, next, today, the emergency banner) and its timeline, no I/O."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from edge_agent.eboard.board import Board, BoardArbiter
from edge_agent.eboard.server import render_board
from edge_agent.eboard.state import LIVE_EMERGENCY_TITLE, board_state
from edge_agent.live import AlwaysGrant
from schedules import ClipRef, DisplayInfo, DisplayText, PlaybackItem, Priority, ScheduleDocument

# 2026-12-04 09:00 local (UTC+7) is 02:00 UTC.
T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
CLIP = ClipRef(sha256="ab" * 32, duration_s=60)


def it(
    item_id: str,
    minutes: float,
    *,
    programme: int,
    length_s: float = 60,
    priority: Priority = Priority.NORMAL,
) -> PlaybackItem:
    start = T0 + timedelta(minutes=minutes)
    return PlaybackItem(
        item_id=item_id,
        programme_id=programme,
        start=start,
        end=start + timedelta(seconds=length_s),
        priority=priority,
        clips=(CLIP,),
    )


def doc(
    *items: PlaybackItem, texts: tuple[DisplayText, ...] = (), unit: str = "Xã An Bình"
) -> ScheduleDocument:
    return ScheduleDocument(
        device_id="board-1",
        version=3,
        generated_at=T0 - timedelta(days=1),
        horizon_start=T0 - timedelta(days=1),
        horizon_end=T0 + timedelta(days=7),
        items=items,
        clips=(CLIP,),
        display=DisplayInfo(unit_name=unit, texts=texts),
    )


TEXTS = (
    DisplayText(programme_id=1, title="Bản tin sáng", text="Thời tiết hôm nay nắng nhẹ."),
    DisplayText(programme_id=2, title="Thông báo tiêm chủng", text="Mời bà con đến trạm y tế."),
    DisplayText(programme_id=9, title="Cảnh báo lũ", text="Nước sông dâng cao, sơ tán ngay."),
)


def at(minutes: float) -> float:
    return (T0 + timedelta(minutes=minutes)).timestamp()


def test_now_next_and_today_follow_the_player_and_the_clock() -> None:
    morning = it("1@a", 0, programme=1)
    vaccine = it("2@a", 30, programme=2)
    evening = it("1@b", 600, programme=1)  # 19:00 local, same day
    document = doc(morning, vaccine, evening, texts=TEXTS)

    before = board_state(document=document, server_time=at(-5), on_air=None, link_up=True)
    assert before.unit_name == "Xã An Bình" and before.schedule_version == 3
    assert before.now is None and before.emergency is None
    assert before.next is not None and before.next.title == "Bản tin sáng"
    assert before.next.start == "09:00" and before.next.text == "Thời tiết hôm nay nắng nhẹ."
    assert [(e.start, e.mark) for e in before.today] == [
        ("09:00", "next"),
        ("09:30", ""),
        ("19:00", ""),
    ]

    playing = board_state(document=document, server_time=at(0.5), on_air=morning)
    assert playing.now is not None and playing.now.title == "Bản tin sáng"
    assert playing.next is not None and playing.next.item_id == "2@a"
    assert [e.mark for e in playing.today] == ["now", "next", ""]
    assert playing.link_up is False

    after = board_state(document=document, server_time=at(2), on_air=None)
    assert after.now is None
    assert [e.mark for e in after.today] == ["done", "next", ""]
    assert after.content() != playing.content()
    # Only the instant differs: the same content, no change to push.
    assert (
        board_state(document=document, server_time=at(3), on_air=None).content() == after.content()
    )


def test_the_scheduled_time_alone_never_claims_an_item_is_playing() -> None:
    morning = it("1@a", 0, programme=1, length_s=600)
    state = board_state(document=doc(morning, texts=TEXTS), server_time=at(1), on_air=None)
    assert state.now is None and state.today[0].mark == ""


def test_today_is_the_local_day_in_ho_chi_minh() -> None:
    # 16:59:59 UTC is 23:59:59 local; 17:00 UTC is 00:00 the next local day.
    late = PlaybackItem(
        item_id="1@late",
        programme_id=1,
        priority=Priority.NORMAL,
        clips=(CLIP,),
        start=datetime(2026, 12, 4, 16, 59, tzinfo=UTC),
        end=datetime(2026, 12, 4, 16, 59, 59, tzinfo=UTC),
    )
    midnight = PlaybackItem(
        item_id="2@midnight",
        programme_id=2,
        priority=Priority.NORMAL,
        clips=(CLIP,),
        start=datetime(2026, 12, 4, 17, 0, tzinfo=UTC),
        end=datetime(2026, 12, 4, 17, 1, tzinfo=UTC),
    )
    early_utc_same_local_day = PlaybackItem(
        item_id="9@early",
        programme_id=9,
        priority=Priority.NORMAL,
        clips=(CLIP,),
        start=datetime(2026, 12, 3, 17, 30, tzinfo=UTC),
        end=datetime(2026, 12, 3, 17, 31, tzinfo=UTC),
    )
    document = doc(early_utc_same_local_day, late, midnight, texts=TEXTS)
    noon = datetime(2026, 12, 4, 5, 0, tzinfo=UTC).timestamp()  # 12:00 local on 4 December
    assert [
        e.item_id for e in board_state(document=document, server_time=noon, on_air=None).today
    ] == [
        "9@early",
        "1@late",
    ]
    assert [
        e.start for e in board_state(document=document, server_time=noon, on_air=None).today
    ] == [
        "00:30",
        "23:59",
    ]
    next_day = datetime(2026, 12, 4, 17, 0, 30, tzinfo=UTC).timestamp()  # 00:00:30 on 5 December
    state = board_state(document=document, server_time=next_day, on_air=None)
    assert [e.item_id for e in state.today] == ["2@midnight"]
    assert state.today[0].start == "00:00" and state.today[0].mark == ""


def test_an_emergency_on_air_raises_the_banner_and_a_live_one_too() -> None:
    flood = it("9@a", 10, programme=9, priority=Priority.EMERGENCY)
    morning = it("1@a", 0, programme=1)
    document = doc(morning, flood, texts=TEXTS)
    scheduled = board_state(document=document, server_time=at(10.1), on_air=None)
    assert scheduled.emergency is None  # not heard yet: no banner ahead of the horns
    heard = board_state(document=document, server_time=at(10.1), on_air=flood)
    assert heard.emergency is not None
    assert heard.emergency.title == "Cảnh báo lũ"
    assert heard.emergency.text == "Nước sông dâng cao, sơ tán ngay."
    assert heard.today[1].emergency and heard.today[1].mark == "now"
    normal = board_state(document=document, server_time=at(0.1), on_air=morning)
    assert normal.emergency is None
    live = board_state(document=document, server_time=at(0.1), on_air=None, live_emergency=True)
    assert live.emergency is not None and live.emergency.title == LIVE_EMERGENCY_TITLE
    assert board_state(document=None, server_time=at(0), on_air=None, live_emergency=True).emergency


def test_without_display_texts_or_a_document_the_board_still_says_something() -> None:
    plain = doc(it("4@a", 5, programme=4)).model_copy(update={"display": None})
    state = board_state(document=plain, server_time=at(0), on_air=None)
    assert state.unit_name == "Bảng tin điện tử"
    assert (
        state.next is not None and state.next.title == "Chương trình số 4" and state.next.text == ""
    )
    empty = board_state(document=None, server_time=at(0), on_air=None)
    assert (
        empty.now is None
        and empty.next is None
        and empty.today == ()
        and empty.schedule_version is None
    )
    json = empty.to_json()
    assert set(json) == {
        "unit_name",
        "now",
        "next",
        "today",
        "emergency",
        "link_up",
        "schedule_version",
        "server_time",
    }


def test_texts_with_markup_stay_text() -> None:
    evil = (
        DisplayText(
            programme_id=1, title="<script>alert(1)</script>", text="<img src=x onerror=alert(2)>"
        ),
    )
    document = doc(it("1@a", 5, programme=1), texts=evil, unit="Xã <b>Bình</b>")
    state = board_state(document=document, server_time=at(0), on_air=None)
    assert (
        state.next is not None and state.next.title == "<script>alert(1)</script>"
    )  # the state keeps the text
    html = render_board(state)
    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html


def test_the_board_applies_a_report_at_its_heard_instant_and_follows_live_emergencies() -> None:
    flood = it("9@a", 0, programme=9, priority=Priority.EMERGENCY)
    document = doc(flood, texts=TEXTS)
    offset = at(0) - time.time()  # a synced clock whose server time is T0 now

    async def scenario() -> None:
        board = Board(
            document=lambda: document,
            server_time=lambda: time.time() + offset,
            link_up=lambda: True,
        )
        heard_at = time.time() + offset + 0.3
        board.on_air(flood, at=heard_at)
        assert board.state.emergency is None  # decoded ahead, not heard yet
        revision = await board.wait_change(board.revision, timeout=5)
        assert time.time() + offset >= heard_at
        assert board.state.emergency is not None and board.state.emergency.title == "Cảnh báo lũ"
        assert revision == board.revision
        board.finished(flood, ended_at=time.time() + offset - 1)  # over already: at once
        assert board.state.now is None and board.state.emergency is None
        # Cut before it was heard: it never comes up.
        board.on_air(flood, at=time.time() + offset + 0.2)
        board.finished(flood, ended_at=None)
        quiet = board.revision
        assert await board.wait_change(quiet, timeout=0.6) == quiet
        assert board.state.emergency is None

        arbiter = BoardArbiter(AlwaysGrant(), board)
        assert (await arbiter.request_live(session_id="s1", priority="normal")).granted
        assert board.state.emergency is None
        await arbiter.release(session_id="s1")
        await arbiter.request_live(session_id="s2", priority="emergency")
        assert board.state.emergency is not None
        assert board.state.emergency.title == LIVE_EMERGENCY_TITLE
        await arbiter.release(session_id="s2")
        assert board.state.emergency is None
        board.close()

    asyncio.run(scenario())
