"""Play-time arbitration: preemption, resumption, waiting, missed and preempted outcomes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schedules import (
    Action,
    ActivePlayback,
    Priority,
    Suspended,
    after_end,
    decide,
    fits_slot,
    latest_start,
    rejoin_position,
    slot_end,
)
from tests.schedules.factories import item, utc

T0 = utc(2025, 6, 2, 22)  # 05:00 in Hà Nội
GRACE = timedelta(minutes=5)
NORMAL_10_MIN = item(1, T0, seconds=600)


def test_slot_arithmetic() -> None:
    assert slot_end(NORMAL_10_MIN, slot_grace=GRACE) == T0 + timedelta(minutes=15)
    assert latest_start(NORMAL_10_MIN, slot_grace=GRACE) == T0 + timedelta(minutes=5)
    resumed_at = latest_start(NORMAL_10_MIN, position_s=240, slot_grace=GRACE)
    assert resumed_at == T0 + timedelta(minutes=9)
    assert fits_slot(NORMAL_10_MIN, now=resumed_at, position_s=240, slot_grace=GRACE)
    assert not fits_slot(
        NORMAL_10_MIN, now=resumed_at + timedelta(seconds=1), position_s=240, slot_grace=GRACE
    )


def test_nothing_playing_plays_at_once() -> None:
    decision = decide(playing=None, incoming=NORMAL_10_MIN, now=T0, slot_grace=GRACE)
    assert decision.action is Action.PLAY
    assert decision.suspended is None


def test_emergency_preempts_normal_and_normal_resumes_where_it_stopped() -> None:
    emergency = item(2, T0 + timedelta(minutes=3), seconds=120, priority=Priority.EMERGENCY)
    now = emergency.start
    decision = decide(
        playing=ActivePlayback(NORMAL_10_MIN, position_s=180),
        incoming=emergency,
        now=now,
        slot_grace=GRACE,
    )
    assert decision.action is Action.PREEMPT
    assert decision.suspended == Suspended(NORMAL_10_MIN, 180, now)

    after = after_end(suspended=[decision.suspended], now=emergency.end, slot_grace=GRACE)
    assert after.resume == decision.suspended
    assert after.resume.position_s == 180
    assert after.start is None
    assert after.preempted == after.suspended == ()
    assert after.missed == after.waiting == ()


def test_preempted_item_past_its_slot_is_marked_preempted() -> None:
    long_emergency = item(2, T0 + timedelta(minutes=3), seconds=900, priority=Priority.EMERGENCY)
    stopped = Suspended(NORMAL_10_MIN, position_s=180, suspended_at=long_emergency.start)
    # 7 of 10 minutes remain; the slot ends at T0+15 min, the emergency ends at T0+18 min.
    after = after_end(suspended=[stopped], now=long_emergency.end, slot_grace=GRACE)
    assert after.resume is None and after.start is None
    assert after.preempted == (stopped,)


@pytest.mark.parametrize(
    ("playing_priority", "incoming_priority", "action"),
    [
        (Priority.NORMAL, Priority.NORMAL, Action.WAIT),
        (Priority.PRIORITY, Priority.PRIORITY, Action.WAIT),
        (Priority.EMERGENCY, Priority.EMERGENCY, Action.WAIT),
        (Priority.PRIORITY, Priority.NORMAL, Action.WAIT),
        (Priority.EMERGENCY, Priority.PRIORITY, Action.WAIT),
        (Priority.NORMAL, Priority.PRIORITY, Action.PREEMPT),
        (Priority.NORMAL, Priority.EMERGENCY, Action.PREEMPT),
        (Priority.PRIORITY, Priority.EMERGENCY, Action.PREEMPT),
    ],
)
def test_only_a_strictly_higher_priority_preempts(
    playing_priority: Priority, incoming_priority: Priority, action: Action
) -> None:
    playing = item(1, T0, seconds=600, priority=playing_priority)
    incoming = item(2, T0 + timedelta(minutes=1), seconds=60, priority=incoming_priority)
    decision = decide(
        playing=ActivePlayback(playing, position_s=60), incoming=incoming, now=incoming.start
    )
    assert decision.action is action
    assert (decision.suspended is not None) == (action is Action.PREEMPT)


def test_equal_priority_waits_then_plays_if_its_slot_allows() -> None:
    later = item(2, T0 + timedelta(minutes=8), seconds=300)
    decision = decide(
        playing=ActivePlayback(NORMAL_10_MIN, position_s=480),
        incoming=later,
        now=later.start,
        slot_grace=GRACE,
    )
    assert decision.action is Action.WAIT
    assert decision.latest_start == later.start + GRACE
    # The first item ends at T0+10 min; the waiting one may start until T0+13 min.
    after = after_end(suspended=[], waiting=[later], now=NORMAL_10_MIN.end, slot_grace=GRACE)
    assert after.start == later
    assert after.missed == ()


def test_waiting_item_whose_slot_passed_is_missed() -> None:
    later = item(2, T0 + timedelta(minutes=1), seconds=300)
    # Its slot ends at T0+11 min; starting at T0+10 min would end at T0+15 min.
    after = after_end(suspended=[], waiting=[later], now=NORMAL_10_MIN.end, slot_grace=GRACE)
    assert after.start is None
    assert after.missed == (later,)


def test_due_item_already_past_its_slot_is_missed_at_once() -> None:
    stale = item(3, T0, seconds=60, priority=Priority.EMERGENCY)
    decision = decide(
        playing=None, incoming=stale, now=T0 + timedelta(minutes=6, seconds=1), slot_grace=GRACE
    )
    assert decision.action is Action.MISS


def test_after_end_prefers_priority_then_suspended_then_planned_start() -> None:
    # Normal item stopped after 400 of 600 s: may resume until T0+11:40 (slot ends T0+15).
    normal = Suspended(NORMAL_10_MIN, position_s=400, suspended_at=T0 + timedelta(minutes=1))
    # Priority item stopped after 30 of 300 s by an emergency.
    priority = Suspended(
        item(2, T0 + timedelta(minutes=2), seconds=300, priority=Priority.PRIORITY),
        position_s=30,
        suspended_at=T0 + timedelta(minutes=2, seconds=30),
    )
    # Arrived during the emergency; may start until T0+7:40 and T0+7:50 respectively.
    waiting_priority = item(
        3, T0 + timedelta(minutes=2, seconds=40), seconds=60, priority=Priority.PRIORITY
    )
    waiting_normal = item(4, T0 + timedelta(minutes=2, seconds=50), seconds=60)

    emergency_ends = T0 + timedelta(minutes=3)
    first = after_end(
        suspended=[normal, priority],
        waiting=[waiting_normal, waiting_priority],
        now=emergency_ends,
        slot_grace=GRACE,
    )
    assert first.resume == priority  # highest priority, and suspended beats waiting
    assert first.suspended == (normal,)
    assert set(first.waiting) == {waiting_normal, waiting_priority}

    priority_ends = emergency_ends + timedelta(seconds=270)  # T0+7:30
    second = after_end(
        suspended=first.suspended, waiting=first.waiting, now=priority_ends, slot_grace=GRACE
    )
    assert second.start == waiting_priority
    assert second.suspended == (normal,)
    assert second.waiting == (waiting_normal,)

    third = after_end(
        suspended=second.suspended,
        waiting=second.waiting,
        now=priority_ends + timedelta(seconds=60),  # T0+8:30
        slot_grace=GRACE,
    )
    assert third.resume == normal
    assert third.missed == (waiting_normal,)


def test_empty_after_end_is_idle() -> None:
    after = after_end(suspended=[], now=T0)
    assert (after.resume, after.start) == (None, None)


@pytest.mark.parametrize("position", [-1.0, 600.5])
def test_position_outside_the_item_is_rejected(position: float) -> None:
    with pytest.raises(ValueError, match="outside item"):
        ActivePlayback(NORMAL_10_MIN, position_s=position)


def test_at_equal_priority_the_suspended_item_goes_before_a_waiting_one() -> None:
    stopped = Suspended(NORMAL_10_MIN, position_s=120, suspended_at=T0 + timedelta(minutes=2))
    early = item(5, T0 + timedelta(minutes=2, seconds=10), seconds=30)
    late = item(6, T0 + timedelta(minutes=2, seconds=20), seconds=30)
    now = T0 + timedelta(minutes=3)
    first = after_end(suspended=[stopped], waiting=[late, early], now=now, slot_grace=GRACE)
    assert first.resume == stopped
    second = after_end(suspended=[], waiting=first.waiting, now=now, slot_grace=GRACE)
    assert second.start == early  # earlier planned start first
    assert second.waiting == (late,)


def test_an_item_cut_by_a_restart_rejoins_in_step_while_some_of_it_is_left() -> None:
    def rejoin(position_s: float, heard_after_s: float, now_after_s: float) -> float | None:
        heard_at, now = T0 + timedelta(seconds=heard_after_s), T0 + timedelta(seconds=now_after_s)
        return rejoin_position(
            NORMAL_10_MIN, position_s=position_s, heard_at=heard_at, now=now, slot_grace=GRACE
        )

    assert rejoin(0, 0, 130.5) == 130.5  # the position it would have reached
    assert rejoin(60, 100, 130) == 90  # a segment that began at 60 s (after a preemption)
    assert rejoin(0, 0, 599.9) == pytest.approx(599.9)
    assert rejoin(0, 0, 600) is None  # its audio would be over: nothing to play in step
    assert rejoin(0, 0, 900) is None  # and its slot too
    assert rejoin(0, 30, 20) == 0  # a clock step backwards never rewinds before the segment
    # A segment that started late (it waited) would end past its slot: no rejoin.
    late = T0 + timedelta(seconds=400)
    now = late + timedelta(seconds=10)
    assert (
        rejoin_position(
            NORMAL_10_MIN, position_s=0, heard_at=late, now=now, slot_grace=timedelta(0)
        )
        is None
    )
