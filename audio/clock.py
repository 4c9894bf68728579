"""Injected clocks: the real one for devices, a manually advanced one for tests."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """Monotonic time for scheduling, wall time for records, and sleeping to a deadline."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (only differences mean anything)."""
        ...

    def time(self) -> float:
        """Wall-clock Unix time in seconds."""
        ...

    async def sleep_until(self, monotonic_deadline: float) -> None:
        """Return once `monotonic()` has reached `monotonic_deadline`."""
        ...


class SystemClock:
    """The machine's clocks; sleeps end within about a millisecond of the deadline."""

    def __init__(self, *, spin_s: float = 0.001) -> None:
        # asyncio rounds epoll timeouts up to whole milliseconds, so the last stretch is
        # spent yielding to the loop instead; spin_s=0 saves that CPU where 1 ms does not matter.
        self.spin_s = spin_s

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    def time(self) -> float:
        """time.time()."""
        return time.time()

    async def sleep_until(self, monotonic_deadline: float) -> None:
        """Sleep coarsely, then yield in a tight loop for the final `spin_s`."""
        remaining = monotonic_deadline - time.monotonic()
        if remaining > self.spin_s:
            await asyncio.sleep(remaining - self.spin_s)
        while time.monotonic() < monotonic_deadline:  # noqa: ASYNC110 - deliberate fine spin
            await asyncio.sleep(0)


def coarse(clock: Clock) -> Clock:
    """The same time, sleeping without the final spin (a SystemClock's; others as they are).

    For audio sinks: their timing is the sample-clock model, so a wake-up a millisecond late
    only leaves their buffer a little emptier, while spinning for that millisecond costs
    thousands of event-loop turns a second (most of a live receiver's CPU, measured).
    """
    if isinstance(clock, SystemClock) and clock.spin_s > 0:
        return SystemClock(spin_s=0)
    return clock


class FakeClock:
    """Virtual time for tests: nothing moves until `advance`/`advance_to` (or `run`) moves it."""

    def __init__(self, *, monotonic: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self._now = monotonic
        self._wall_offset = wall - monotonic
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        """Current virtual monotonic time."""
        return self._now

    def time(self) -> float:
        """Current virtual wall time (moves with monotonic time)."""
        return self._now + self._wall_offset

    async def sleep_until(self, monotonic_deadline: float) -> None:
        """Wait until virtual time reaches the deadline (returns at once if it has)."""
        if monotonic_deadline <= self._now:
            await asyncio.sleep(0)  # still a scheduling point, like a real zero-length sleep
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (monotonic_deadline, next(self._order), future))
        await future

    def next_deadline(self) -> float | None:
        """The earliest deadline someone is sleeping until, or None."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # a cancelled sleeper
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        """Move virtual time forward by `seconds` and wake every sleeper now due."""
        self.advance_to(self._now + seconds)

    def advance_to(self, monotonic: float) -> None:
        """Move virtual time to `monotonic` (never backwards) and wake sleepers now due."""
        if monotonic < self._now:
            raise ValueError("a monotonic clock cannot go backwards")
        self._now = monotonic
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    async def run(self, awaitable: Awaitable[T], *, idle_yields: int = 20) -> T:
        """Await `awaitable`, jumping virtual time to the next deadline whenever all tasks wait."""
        task = asyncio.ensure_future(awaitable)
        while not task.done():
            for _ in range(idle_yields):
                await asyncio.sleep(0)
                if task.done():
                    break
            else:
                deadline = self.next_deadline()
                if deadline is None:
                    # Nobody sleeps on this clock: the task waits on something else (real I/O).
                    await asyncio.sleep(0.001)
                else:
                    self.advance_to(deadline)
        return task.result()
