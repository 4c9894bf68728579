"""Devices running the agent's real ClockSync loop on virtual time over a jittery network.

Each device has its own true offset and its own one-way delays; the server answers at once.
While live, frames arrive (thinned to one every 200 ms) and, with `frames`, bound the offset.
With `drift_ppm`, each device's offset also moves at its own rate (uniform in +- that many
ppm): a real clock against the server's, which the real runs cannot show (their agents
share the machine's clock).
The estimate's error (estimate minus true offset) is sampled for every device at the same
instants, so the skew between devices at an instant is the spread of their errors: what
synchronised playout would show, before the output's own timing adds to it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from audio.clock import FakeClock
from edge_agent.clocksync import ClockSync
from protocol import TimeRequest, TimeResponse

Delay = Callable[[], float]


def live_bench_delay(rng: random.Random) -> float:
    """bench/live.py's jitter profile: 30 ms plus exponential (mean 15 ms, capped 300 ms)."""
    return 0.030 + min(rng.expovariate(1 / 0.015), 0.300)


def bad_4g_delay(rng: random.Random) -> float:
    """bench/_linkproxy.py's BAD_4G one-way delay: uniform 100 +- 40 ms."""
    return rng.uniform(0.060, 0.140)


def bad_4g_hops_delay(rng: random.Random) -> float:
    """BAD_4G plus two hops' small delays, U(0, 1 ms) each, as the real runs have them.

    A proxy (or a cell's scheduler) that delivers up to a millisecond late, and an event loop
    that stamps a message only when it gets to it: they make the fastest of n trips approach
    its floor as n^(-1/3), not n^(-1) (docs/benchmarks.md, "Eighth pass").
    """
    return bad_4g_delay(rng) + rng.uniform(0, 0.001) + rng.uniform(0, 0.001)


async def _live_frames(
    clock: FakeClock, syncs: list[ClockSync], start: float, end: float,
    floors: Callable[[int, float], float] | None,
) -> None:  # fmt: skip
    """A live stream from `start` to `end`: a frame every 200 ms (a 20 ms stream, thinned).

    floors: device index and arrival time -> the arriving frame's send time minus arrival,
    a lower bound the agent takes from every frame (ClockSync.frame_sent)."""
    t = start
    while t < end:
        await clock.sleep_until(t)
        for i, sync in enumerate(syncs):
            sync.stream_arrival("live", t)
            if floors is not None:
                sync.frame_sent(t + floors(i, t), t)
        t += 0.2


async def _simulate(
    clock: FakeClock, devices: int, seconds: float, every_s: float, from_s: float,
    rng: random.Random, sync_kwargs: dict[str, Any], delay: Callable[[random.Random], float],
    live: tuple[tuple[float, float], ...], drift_ppm: float, frames: random.Random | None,
) -> tuple[list[list[float]], list[int]]:  # fmt: skip
    syncs: list[ClockSync] = []
    truths: list[float] = []
    rates: list[float] = []
    pending: set[asyncio.Task[None]] = set()

    def device(truth: float, rate: float) -> ClockSync:
        def send(request: TimeRequest) -> bool:
            up, down = delay(rng), delay(rng)
            sent = clock.monotonic()

            async def answer() -> None:
                await clock.sleep_until(sent + up + down)
                t1 = sent + up + truth + rate * (sent + up)
                response = TimeResponse(id=request.id, t0=request.t0, t1=t1, t2=t1)
                sync.on_response(response, received=clock.monotonic())

            task = asyncio.ensure_future(answer())
            pending.add(task)
            task.add_done_callback(pending.discard)
            return True

        sync = ClockSync(clock=clock, send=send, **sync_kwargs)
        return sync

    for _ in range(devices):
        truth = 1_700_000_000.0 + rng.uniform(-2, 2)
        rate = rng.uniform(-drift_ppm, drift_ppm) * 1e-6 if drift_ppm else 0.0
        truths.append(truth)
        rates.append(rate)
        syncs.append(device(truth, rate))
    loops = []
    for sync in syncs:
        sync.connected()
        loops.append(asyncio.ensure_future(sync.run()))
    start = clock.monotonic()

    def frame_floor(i: int, t: float) -> float:  # the frame arriving at t left a way down ago
        assert frames is not None
        down = delay(frames)
        return truths[i] + rates[i] * (t - down) - down

    floor = None if frames is None else frame_floor
    loops += [
        asyncio.ensure_future(_live_frames(clock, syncs, start + a, start + b, floor))
        for a, b in live
    ]
    errors: list[list[float]] = []
    t = start + from_s
    while t < start + seconds:
        await clock.sleep_until(t)
        row = []
        for sync, truth, rate in zip(syncs, truths, rates, strict=True):
            est = sync.estimate
            row.append(float("nan") if est is None else est.offset - (truth + rate * t))
        errors.append(row)
        t += every_s
    for task in [*loops, *pending]:
        task.cancel()
    await asyncio.gather(*loops, *pending, return_exceptions=True)
    return errors, [s.probes_sent for s in syncs]


def simulate(
    *, devices: int = 10, seconds: float = 3600, every_s: float = 7.0, from_s: float = 60.0,
    seed: int = 7, delay: Callable[[random.Random], float] = live_bench_delay,
    live: tuple[tuple[float, float], ...] = (), drift_ppm: float = 0.0, frames: bool = False,
    **sync_kwargs: Any,
) -> tuple[list[list[float]], list[int]]:  # fmt: skip
    """Per-instant estimate errors (s) of every device, and the probes each sent.

    live: (start, end) spans, in seconds from connect, during which a live stream plays.
    drift_ppm: each device's offset drifts at a rate uniform in +- this (docs/benchmarks.md,
    "Tenth pass"); 0 keeps every offset constant and the random draws as they were.
    frames: each live frame also bounds the offset from below, its send time minus its
    arrival (ClockSync.frame_sent), as the agent takes it ("Eleventh pass").
    """
    clock = FakeClock(monotonic=1000.0)
    rng = random.Random(seed)
    random.seed(seed)  # ClockSync jitters its burst gaps with the module's generator
    downs = random.Random(seed + 1) if frames else None  # the probes' draws stay as they were
    run = _simulate(
        clock, devices, seconds, every_s, from_s, rng, sync_kwargs, delay, live, drift_ppm, downs
    )  # fmt: skip
    return asyncio.run(clock.run(run))


def skews_ms(errors: list[list[float]]) -> list[float]:
    """Spread (max - min) of the devices' errors at each instant, in ms."""
    return [(max(row) - min(row)) * 1000 for row in errors]
