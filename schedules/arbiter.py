"""Play-time priority rules for the edge player, as a pure state machine.

Nothing here reads a clock: the caller passes `now`. An item's *slot* runs from its
planned start to `slot_end = planned end + slot_grace`. An item may start, or resume
from where it stopped, at `now` only if it can still finish inside its slot:
`now + remaining ≤ slot_end`. A waiting item that no longer fits is *missed*; a
suspended (preempted) item that no longer fits is *preempted* for good.

An item cut by an agent restart (the process died mid-item) *rejoins* in step: it picks up
at the position it would have reached had it never stopped, so clusters within earshot stay
in step, as long as some of its audio is left and it fits its slot.

Rules: a strictly higher priority preempts (so emergency preempts everything); equal or
lower priority waits. When the playing item ends, the highest-priority item that still
fits plays next; at equal priority a suspended item (it was playing first) goes before a
waiting one, then the earlier planned start wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from schedules.model import PlaybackItem

DEFAULT_SLOT_GRACE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ActivePlayback:
    """The item playing now and how many seconds of its audio have been played."""

    item: PlaybackItem
    position_s: float

    def __post_init__(self) -> None:
        _check_position(self.item, self.position_s)


@dataclass(frozen=True, slots=True)
class Suspended:
    """An item stopped by a preemption, with the position to resume from."""

    item: PlaybackItem
    position_s: float
    suspended_at: datetime

    def __post_init__(self) -> None:
        _check_position(self.item, self.position_s)


class Action(StrEnum):
    """What the player does with an item that has become due."""

    PLAY = "play"  # nothing is playing: start it now
    PREEMPT = "preempt"  # suspend the playing item and start this one now
    WAIT = "wait"  # keep playing; this one waits, at the latest until Decision.latest_start
    MISS = "miss"  # it can no longer finish inside its slot: record it as missed


@dataclass(frozen=True, slots=True)
class Decision:
    """The arbiter's answer for a due item; `suspended` is set only for PREEMPT."""

    action: Action
    incoming: PlaybackItem
    latest_start: datetime
    suspended: Suspended | None = None


@dataclass(frozen=True, slots=True)
class ResumeDecision:
    """What follows the end of the playing item; at most one of resume/start is set."""

    resume: Suspended | None
    start: PlaybackItem | None
    preempted: tuple[Suspended, ...]  # slot passed while suspended: outcome 'preempted'
    missed: tuple[PlaybackItem, ...]  # slot passed while waiting: outcome 'missed'
    suspended: tuple[Suspended, ...]  # still suspended, for the next after_end
    waiting: tuple[PlaybackItem, ...]  # still waiting, for the next after_end


def _check_position(item: PlaybackItem, position_s: float) -> None:
    duration_s = item.duration.total_seconds()
    if not 0 <= position_s <= duration_s:
        raise ValueError(
            f"position {position_s} s is outside item {item.item_id} (0 to {duration_s} s)"
        )


def slot_end(item: PlaybackItem, *, slot_grace: timedelta = DEFAULT_SLOT_GRACE) -> datetime:
    """The moment by which the item must have finished playing."""
    return item.end + slot_grace


def latest_start(
    item: PlaybackItem, *, position_s: float = 0.0, slot_grace: timedelta = DEFAULT_SLOT_GRACE
) -> datetime:
    """The last moment the item can (re)start from `position_s` and still fit its slot."""
    remaining = item.duration - timedelta(seconds=position_s)
    return slot_end(item, slot_grace=slot_grace) - remaining


def fits_slot(
    item: PlaybackItem,
    *,
    now: datetime,
    position_s: float = 0.0,
    slot_grace: timedelta = DEFAULT_SLOT_GRACE,
) -> bool:
    """True if playing the rest of the item from `now` ends inside its slot."""
    return now <= latest_start(item, position_s=position_s, slot_grace=slot_grace)


def rejoin_position(
    item: PlaybackItem,
    *,
    position_s: float,
    heard_at: datetime,
    now: datetime,
    slot_grace: timedelta = DEFAULT_SLOT_GRACE,
) -> float | None:
    """Where an item cut by a restart picks up at `now` (`position_s` was heard at `heard_at`).

    None when its audio would already have ended, or the rest no longer fits its slot.
    """
    _check_position(item, position_s)
    position = position_s + max(0.0, (now - heard_at).total_seconds())
    if position >= item.duration.total_seconds():
        return None
    if not fits_slot(item, now=now, position_s=position, slot_grace=slot_grace):
        return None
    return position


def decide(
    *,
    playing: ActivePlayback | None,
    incoming: PlaybackItem,
    now: datetime,
    slot_grace: timedelta = DEFAULT_SLOT_GRACE,
) -> Decision:
    """Decide what to do with `incoming`, which is due at `now`, given what is playing."""
    deadline = latest_start(incoming, slot_grace=slot_grace)
    if now > deadline:
        return Decision(Action.MISS, incoming, deadline)
    if playing is None:
        return Decision(Action.PLAY, incoming, deadline)
    if incoming.priority.outranks(playing.item.priority):
        stopped = Suspended(playing.item, playing.position_s, now)
        return Decision(Action.PREEMPT, incoming, deadline, suspended=stopped)
    return Decision(Action.WAIT, incoming, deadline)


def after_end(
    *,
    suspended: Sequence[Suspended],
    now: datetime,
    waiting: Sequence[PlaybackItem] = (),
    slot_grace: timedelta = DEFAULT_SLOT_GRACE,
) -> ResumeDecision:
    """Choose what plays after the current item ends, and expire what no longer fits."""
    live_suspended: list[Suspended] = []
    preempted: list[Suspended] = []
    for stopped in suspended:
        fits = fits_slot(
            stopped.item, now=now, position_s=stopped.position_s, slot_grace=slot_grace
        )
        (live_suspended if fits else preempted).append(stopped)
    live_waiting: list[PlaybackItem] = []
    missed: list[PlaybackItem] = []
    for item in waiting:
        (live_waiting if fits_slot(item, now=now, slot_grace=slot_grace) else missed).append(item)

    # Candidates ranked by priority, then suspended before waiting, then planned start.
    candidates: list[tuple[tuple[int, int, datetime, str], Suspended | PlaybackItem]] = [
        ((-s.item.priority.rank, 0, s.item.start, s.item.item_id), s) for s in live_suspended
    ]
    candidates += [((-w.priority.rank, 1, w.start, w.item_id), w) for w in live_waiting]
    if not candidates:
        return ResumeDecision(None, None, tuple(preempted), tuple(missed), (), ())
    chosen = min(candidates, key=lambda pair: pair[0])[1]
    return ResumeDecision(
        resume=chosen if isinstance(chosen, Suspended) else None,
        start=chosen if isinstance(chosen, PlaybackItem) else None,
        preempted=tuple(preempted),
        missed=tuple(missed),
        suspended=tuple(s for s in live_suspended if s is not chosen),
        waiting=tuple(w for w in live_waiting if w is not chosen),
    )
