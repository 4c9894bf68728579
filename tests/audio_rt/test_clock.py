"""Clocks: the fake one is exact and ordered; the system one wakes within about a millisecond."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from audio.clock import FakeClock, SystemClock
from tests.audio_rt.helpers import run


def test_fake_clock_wakes_sleepers_in_deadline_order_when_advanced() -> None:
    clock = FakeClock(monotonic=10.0, wall=1000.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, deadline: float) -> None:
        await clock.sleep_until(deadline)
        woke.append((name, clock.monotonic()))

    async def scenario() -> None:
        tasks = [asyncio.create_task(sleeper(n, d)) for n, d in (("b", 12.0), ("a", 11.0))]
        await asyncio.sleep(0)
        assert clock.next_deadline() == 11.0
        clock.advance(0.5)
        await asyncio.sleep(0)
        assert woke == []
        clock.advance_to(12.0)
        await asyncio.gather(*tasks)

    run(scenario())
    assert [n for n, _ in woke] == ["a", "b"]
    assert clock.time() == pytest.approx(1002.0)
    with pytest.raises(ValueError):
        clock.advance_to(1.0)


def test_fake_clock_run_jumps_virtual_time() -> None:
    clock = FakeClock()

    async def long_wait() -> float:
        await clock.sleep_until(clock.monotonic() + 3600)
        return clock.monotonic()

    began = time.monotonic()
    assert run(clock.run(long_wait())) == pytest.approx(1000.0 + 3600)
    assert time.monotonic() - began < 2.0


def test_system_clock_sleeps_end_within_a_millisecond() -> None:
    clock = SystemClock()

    async def lateness() -> list[float]:
        late = []
        for i in range(40):
            deadline = clock.monotonic() + 0.003 + (i % 7) * 0.0011
            await clock.sleep_until(deadline)
            late.append(clock.monotonic() - deadline)
        return late

    late = run(lateness())
    assert min(late) >= 0.0
    assert statistics.median(late) <= 0.001
    assert max(late) <= 0.02  # generous: a loaded CI machine may preempt us once
    assert abs(clock.time() - time.time()) < 0.01
