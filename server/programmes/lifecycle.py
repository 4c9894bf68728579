"""When a programme has started and when it is over, for approved -> active -> ended."""

from __future__ import annotations

from datetime import datetime, timedelta

from schedules import DEFAULT_SLOT_GRACE, ProgrammeSpec, expand_programme, wall_to_utc

# Searching for a next playback: near windows first (cheap for daily and weekly rules),
# a century last (only finite rules, COUNT or UNTIL, get that far).
_SEARCH_SPANS = (timedelta(days=2), timedelta(days=400), timedelta(days=36_500))
_EPSILON = timedelta(microseconds=1)
# A device may still start or finish a playback this long after its planned end (a priority
# bulletin at the slot head or a preemption pushed it later; schedules.arbiter's slot).
# Ending the programme sooner would drop the item from the next schedule mid-play.
ENDED_AFTER = DEFAULT_SLOT_GRACE


def _earliest_possible(spec: ProgrammeSpec) -> datetime:
    if spec.start is not None:
        return spec.start
    assert spec.dtstart is not None  # a recurring spec always has one
    first = wall_to_utc(spec.dtstart)
    if spec.valid_from is not None:
        first = max(first, spec.valid_from)
    return first - timedelta(days=1)


def has_started(spec: ProgrammeSpec, *, now: datetime) -> bool:
    """True once the programme's first playback has begun."""
    low = _earliest_possible(spec)
    if low >= now:
        return False
    return bool(expand_programme(spec, window_start=low, window_end=now + _EPSILON))


def plays_after(spec: ProgrammeSpec, *, now: datetime) -> bool:
    """True while some playback is still running at `now` or will start later."""
    if spec.start is not None:
        return spec.start + spec.duration > now
    if spec.valid_until is not None and now >= spec.valid_until + spec.duration:
        return False
    rule = spec.rrule or ""
    if spec.valid_until is None and "COUNT=" not in rule and "UNTIL=" not in rule:
        return True  # an endless rule, validated to produce occurrences
    return any(
        expand_programme(spec, window_start=now, window_end=now + span) for span in _SEARCH_SPANS
    )


def slot_open_after(spec: ProgrammeSpec, *, now: datetime) -> bool:
    """True while a device may still be playing some playback (its slot is open) or later."""
    return plays_after(spec, now=now - ENDED_AFTER)
