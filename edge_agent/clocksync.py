"""The device's offset to the server clock, estimated NTP-style over MQTT.

Local time here is the *monotonic* clock, so a step of the Pi's wall clock (NTP catching up
after boot) never moves a planned start: the estimate is `server time - monotonic time`.
From each probe (t0 and t3 local, t1 and t2 on the server):

    offset = ((t1 - t0) + (t2 - t3)) / 2        delay = (t3 - t0) - (t2 - t1)

Each probe bounds the offset: it lies between `t2 - t3` (the answer took no time) and
`t1 - t0` (the question took none). The estimate is the middle of the intersection of those
intervals over a sliding window, i.e. the fastest way *up* and the fastest way *down* are
taken separately, from whichever probes they came; its error bound is half the
intersection's width. Picking the lowest round trips instead needs one probe lucky both ways
at once: with 30 ms + exponential(15 ms) each way and 100 probes that is ~6 times the error,
and a direction with more jitter biases it. If the intervals do not intersect (the server's
clock stepped, or drift over the window exceeds the fastest round trip) the estimate falls
back to the median offset of the fastest samples (the fastest quarter, at least three, of
which those within twice the fastest delay + 1 ms), with half the fastest delay as error.

Probing: a burst after each connect; then every `fast_interval_s` while one more probe could
still move the estimate by more than `stable_error_s` (a jittery link needs more samples for
the same accuracy: see `OffsetEstimator.residual`), and every `interval_s` once it could not.
A sample whose interval misses the current estimate's proves the offset moved (a clock
step): the older samples are dropped and a burst follows.

While live audio plays: a longer burst when a stream starts, then a probe every
`live_interval_s` while one could still gain a quarter of `stable_error_s`. An answer that
arrives on a live frame's heels (within HELD_BEHIND_FRAME_S) may have waited behind it in
TCP's order, so only its way up counts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from audio.clock import Clock
from protocol import TimeRequest, TimeResponse

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0
# Probes right after a (re)connect, so a good estimate comes quickly: 24 reach a sub-ms skew
# on a jittery link within minutes (bench/field_link.py clock). Samples still in the window
# count towards it, so a fleet reconnecting after a broker restart sends only MIN_BURST each.
BURST = 24
MIN_BURST = 4
BURST_GAP_S = 0.2
NEAR_FASTEST_S = 0.001
JUMP_MARGIN_S = 0.001  # drift allowance before a disagreeing sample counts as a clock step
JUMP_BURST_EVERY_S = 60.0  # at most one step-triggered burst per minute
# Live frames come every 20 or 40 ms: a longer silence inside one stream is the link holding
# traffic back (a 4G hand-over), seen whole, where a probe sees a stall only if it is in
# flight (with one every 5-30 s, mostly a part of it or none).
STREAM_GAP_S = 0.25
# While live audio plays, clusters within earshot must agree to a millisecond, and over a
# jittery cell the estimate's error shrinks only as 1/probes (the fastest of n draws sits
# ~jitter/n above the floor). So a live stream that starts after a quiet spell gets a burst,
# then a probe every `live_interval_s` while frames keep coming and a probe still gains
# something: ~800 bytes a second on such a cell, beside ~3 KB a second of audio. The burst
# is what the first minute's skew rests on (the way up is bounded by probes alone; frames
# bound the way down): over BAD_4G, right after an earlier broadcast, 64 left it at 1.2-1.4
# ms and 256 (51 s) brings it under 1 ms; after an idle spell it is not yet under 1 ms either
# way (docs/benchmarks.md, "Ninth pass"). On a quiet link it ends after a few probes.
LIVE_BURST = 256
LIVE_QUIET_S = 60.0  # frames after this much silence start a new session: a new burst
LIVE_HELD_S = 2.0  # probing stays live this long after the last frame (a stall included)
LIVE_STABLE_FRACTION = 0.25  # while live, probe fast until a probe gains < stable_error / 4
# TCP delivers in order: an answer that waited behind a live frame (a retransmission or a
# slow segment ahead of it) comes out with that frame, at the same instant. Its way down
# then measured the frame's delay, not its own, and its lower bound would drag the offset
# down (by ms over a jittery cell). Such an answer still bounds the offset from above.
HELD_BEHIND_FRAME_S = 0.002


@dataclass(frozen=True)
class ClockSample:
    """One probe's result, in seconds."""

    at: float  # local monotonic time of t3
    offset: float
    delay: float
    held: bool = False  # the answer came in on a live frame's heels: its way down is unknown


@dataclass(frozen=True)
class ClockEstimate:
    """Offset (server - local monotonic) and its error bound, in seconds."""

    offset: float
    error: float
    samples: int


class OffsetEstimator:
    """Keeps the recent samples; the estimate is the middle of their common offset interval."""

    def __init__(
        self, *, window_s: float, best_fraction: float = 0.25, min_best: int = 3, limit: int = 1024
    ) -> None:
        self.window_s = window_s
        self.best_fraction = best_fraction
        self.min_best = min_best
        self._samples: deque[ClockSample] = deque(maxlen=limit)
        # Lower bounds from live frames' send times: (local time, bound), bounds decreasing,
        # so the first is the window's highest (a running maximum, as SlowestTrip).
        self._floors: deque[tuple[float, float]] = deque()

    def add(
        self, *, t0: float, t1: float, t2: float, t3: float, held: bool = False
    ) -> ClockSample | None:
        """Add one probe (t0, t3 local; t1, t2 server); None if it is impossible and dropped.

        held: the answer may have waited behind other data (see ClockSync.on_response), so
        it bounds the offset only from above (its way up)."""
        delay = (t3 - t0) - (t2 - t1)
        if t3 < t0 or t2 < t1 or delay < 0:
            return None  # a reordered or forged answer: no physical exchange looks like this
        offset = ((t1 - t0) + (t2 - t3)) / 2
        sample = ClockSample(at=t3, offset=offset, delay=delay, held=held)
        self._samples.append(sample)
        return sample

    def add_floor(self, *, at: float, low: float) -> None:
        """A lower bound on the offset seen at local time `at` (a frame's send time - arrival)."""
        while self._floors and self._floors[-1][1] <= low:
            self._floors.pop()
        self._floors.append((at, low))

    def residual(self, now: float) -> float | None:
        """About how much one more probe could still tighten the estimate (s), or None.

        The spread of round trips (median - fastest) over the number of samples: the fastest
        of n draws sits ~spread/n above the floor. A quiet LAN needs a few samples, a jittery
        cell many; the error bound cannot say which, as it never drops below the floor."""
        self.estimate(now)  # drops samples older than the window
        if len(self._samples) < self.min_best:
            return None
        delays = [s.delay for s in self._samples]
        return (statistics.median(delays) - min(delays)) / len(delays)

    def round_trips(self, now: float) -> tuple[float, float] | None:
        """Median and 95th-percentile round trip (s) of the samples in the window, or None."""
        self.estimate(now)
        if len(self._samples) < self.min_best:
            return None
        delays = sorted(s.delay for s in self._samples)
        return statistics.median(delays), delays[min(len(delays) - 1, int(0.95 * len(delays)))]

    def count(self, now: float) -> int:
        """How many samples the window holds at `now`."""
        self.estimate(now)
        return len(self._samples)

    def forget_before(self, at: float) -> None:
        """Drop the samples taken before local time `at` (they predate a clock step)."""
        while self._samples and self._samples[0].at < at:
            self._samples.popleft()
        self._floors = deque((t, low) for t, low in self._floors if t >= at)

    def estimate(self, now: float) -> ClockEstimate | None:
        """The current estimate from samples taken within the window, or None."""
        while self._samples and now - self._samples[0].at > self.window_s:
            self._samples.popleft()
        while self._floors and now - self._floors[0][0] > self.window_s:
            self._floors.popleft()
        if not self._samples:
            return None
        # offset - delay/2 = t2 - t3 and offset + delay/2 = t1 - t0 (see the module doc).
        low = max((s.offset - s.delay / 2 for s in self._samples if not s.held), default=None)
        if self._floors:
            low = self._floors[0][1] if low is None else max(low, self._floors[0][1])
        high = min(s.offset + s.delay / 2 for s in self._samples)
        if low is not None and low <= high:
            return ClockEstimate(
                offset=(low + high) / 2, error=(high - low) / 2, samples=len(self._samples)
            )
        ranked = sorted(self._samples, key=lambda s: s.delay)
        keep = max(self.min_best, round(len(ranked) * self.best_fraction))
        # Of those, only the ones nearly as fast as the fastest: with few samples a "best
        # three" can still hold two that queued, and their skew would drag the median.
        limit = 2 * ranked[0].delay + NEAR_FASTEST_S
        best = [s for s in ranked[:keep] if s.delay <= limit]
        return ClockEstimate(
            offset=statistics.median(s.offset for s in best),
            error=best[0].delay / 2,
            samples=len(self._samples),
        )


class SlowestTrip:
    """The slowest trip of the last `memory_s`: a stall the link went through.

    Trips are probe round trips and gaps inside a live stream (plus a one-way trip). An
    hour, not the estimator's window: stalls come every few minutes at most, and the server
    sizes live playout delays to cover the ones devices saw (server/live/delay.py).
    A running maximum: each new trip drops the older ones it outlasts.
    """

    def __init__(self, *, memory_s: float = 3600.0) -> None:
        self.memory_s = memory_s
        self._trips: deque[tuple[float, float]] = deque()  # (at, delay), delays decreasing

    def add(self, *, at: float, delay: float) -> None:
        """Remember one round trip (s) taken at local time `at`."""
        while self._trips and self._trips[-1][1] <= delay:
            self._trips.pop()
        self._trips.append((at, delay))

    def value(self, now: float) -> float | None:
        """The slowest round trip (s) within the memory, or None."""
        while self._trips and now - self._trips[0][0] > self.memory_s:
            self._trips.popleft()
        return self._trips[0][1] if self._trips else None


class ClockSync:
    """Sends probes, reads answers and converts between server time and local monotonic time."""

    def __init__(
        self,
        *,
        clock: Clock,
        send: Callable[[TimeRequest], bool],
        interval_s: float,
        window_s: float,
        fast_interval_s: float | None = None,
        stable_error_s: float = 0.0,
        live_interval_s: float | None = None,
    ) -> None:
        self.clock = clock
        self._send = send
        self.interval_s = interval_s
        self.fast_interval_s = min(interval_s, fast_interval_s or interval_s)
        self.live_interval_s = min(self.fast_interval_s, live_interval_s or self.fast_interval_s)
        self.stable_error_s = stable_error_s
        self._last_jump: float | None = None
        self.jumps = 0
        self.estimator = OffsetEstimator(window_s=window_s)
        self.slowest = SlowestTrip()
        self._stream: tuple[str, float] | None = None  # (live topic, last frame's arrival)
        self._pending: dict[str, float] = {}  # probe id -> local monotonic send time
        self._estimate: ClockEstimate | None = None
        self._burst = asyncio.Event()
        self._burst_size = BURST
        self.probes_sent = 0
        self.answers = 0

    # -- conversions ------------------------------------------------------------------------

    @property
    def estimate(self) -> ClockEstimate | None:
        """The latest estimate, or None before the first answer."""
        return self._estimate

    def offset(self) -> float:
        """server time - local monotonic time; the local wall clock stands in before any answer."""
        if self._estimate is not None:
            return self._estimate.offset
        return self.clock.time() - self.clock.monotonic()

    def server_time(self, monotonic: float | None = None) -> float:
        """Server Unix time at a local monotonic instant (default: now)."""
        mono = self.clock.monotonic() if monotonic is None else monotonic
        return mono + self.offset()

    def to_monotonic(self, server_time: float) -> float:
        """The local monotonic instant of a server Unix time."""
        return server_time - self.offset()

    def offset_ms(self) -> float | None:
        """How far the server clock is ahead of this device's wall clock (ms), if measured."""
        if self._estimate is None:
            return None
        wall_offset = self.clock.time() - self.clock.monotonic()
        return (self._estimate.offset - wall_offset) * 1000

    def link_ms(self) -> tuple[float, float] | None:
        """Median and 95th-percentile probe round trip (ms), once a few probes answered."""
        trips = self.estimator.round_trips(self.clock.monotonic())
        return None if trips is None else (trips[0] * 1000, trips[1] * 1000)

    def stream_arrival(self, stream: str, at: float) -> None:
        """A live frame of `stream` arrived at local time `at`: a long gap is a stall."""
        last = self._stream
        self._stream = (stream, at)
        if last is None or at - last[1] > LIVE_QUIET_S:
            self._burst_size = LIVE_BURST  # a session starts: be as exact as the link allows
            self._burst.set()
            return
        if last[0] != stream or at - last[1] <= STREAM_GAP_S:
            return
        link = self.link_ms()  # a frame sent as the stall began arrives a trip after it
        self.slowest.add(at=at, delay=at - last[1] + (link[1] / 2000 if link else 0.0))

    def frame_sent(self, sent: float, at: float) -> None:
        """A live frame sent at server time `sent` arrived at local time `at`: a lower bound.

        The way down sharpens as fast as probes sharpen the way up: 25-50 frames a second,
        where answers held behind frames seldom reach the floor (HELD_BEHIND_FRAME_S).
        """
        self.estimator.add_floor(at=at, low=sent - at)

    def link_max_ms(self) -> float | None:
        """Longest trip (ms) of the last hour, probes and live streams: the worst stall."""
        longest = self.slowest.value(self.clock.monotonic())
        return None if longest is None else longest * 1000

    def error_ms(self) -> float | None:
        """Error bound of the offset (ms), if measured."""
        return None if self._estimate is None else self._estimate.error * 1000

    # -- probes -----------------------------------------------------------------------------

    def connected(self) -> None:
        """Probe a few times right away after a (re)connect."""
        self._burst_size = max(self._burst_size, BURST)
        self._burst.set()

    def on_response(self, response: TimeResponse, *, received: float) -> None:
        """An answer read at local monotonic time `received` (taken on arrival)."""
        sent = self._pending.pop(response.id, None)
        if sent is None:
            return  # not ours, late or a duplicate
        stream = self._stream
        held = stream is not None and 0.0 <= received - stream[1] < HELD_BEHIND_FRAME_S
        sample = self.estimator.add(t0=sent, t1=response.t1, t2=response.t2, t3=received, held=held)
        if sample is None:
            return
        self.answers += 1
        self.slowest.add(at=sample.at, delay=sample.delay)
        previous = self._estimate
        if previous is not None and self._stepped(previous, sample):
            self.estimator.forget_before(sample.at)
        self._estimate = self.estimator.estimate(received)
        if previous is None and self._estimate is not None:
            log.info(
                "clock: first offset estimate %+.1f ms from the wall clock (error ±%.1f ms)",
                self.offset_ms() or 0.0,
                self._estimate.error * 1000,
            )

    def _stepped(self, previous: ClockEstimate, sample: ClockSample) -> bool:
        """True (and a burst is due) if the sample proves the offset moved since `previous`."""
        gap = abs(sample.offset - previous.offset) - sample.delay / 2 - previous.error
        if gap <= JUMP_MARGIN_S:
            return False
        self.jumps += 1
        log.warning("clock: the offset moved by %+.1f ms; re-probing", gap * 1000)
        if self._last_jump is None or sample.at - self._last_jump >= JUMP_BURST_EVERY_S:
            self._last_jump = sample.at
            self._burst.set()
        return True

    def live(self) -> bool:
        """True while live frames are arriving (or paused for less than LIVE_HELD_S)."""
        stream = self._stream
        return stream is not None and self.clock.monotonic() - stream[1] <= LIVE_HELD_S

    def settled_for_live(self) -> bool:
        """True once one more probe would gain less than live audio needs (a quiet link)."""
        residual = self.estimator.residual(self.clock.monotonic())
        return residual is not None and residual <= self.stable_error_s * LIVE_STABLE_FRACTION

    def next_gap(self) -> float:
        """Seconds to the next regular probe: fast until more probes would barely help."""
        residual = self.estimator.residual(self.clock.monotonic())
        if self.live() and not self.settled_for_live():  # a quiet LAN still settles
            return self.live_interval_s
        if residual is None or residual > self.stable_error_s:
            return self.fast_interval_s
        return self.interval_s

    def probe(self) -> bool:
        """Send one probe; False if it could not be sent (not connected)."""
        now = self.clock.monotonic()
        self._pending = {k: t for k, t in self._pending.items() if now - t < PROBE_TIMEOUT_S}
        probe_id = uuid.uuid4().hex[:16]
        self._pending[probe_id] = now
        if not self._send(TimeRequest(id=probe_id, t0=self.clock.time())):
            self._pending.pop(probe_id, None)
            return False
        self.probes_sent += 1
        return True

    async def run(self) -> None:
        """Probe in a burst after each connect or step, then at `next_gap` (until cancelled)."""
        while True:
            if self._burst.is_set():
                self._burst.clear()
                # Jittered, so devices reconnecting together (after a broker restart) do
                # not queue their probes behind each other's and skew every sample.
                held = self.estimator.count(self.clock.monotonic())
                size, self._burst_size = self._burst_size, BURST
                if size == BURST:  # a reconnect: the samples still held count towards it
                    size = max(MIN_BURST, BURST - held)
                live_burst = size == LIVE_BURST
                for _ in range(size):
                    gap = BURST_GAP_S * random.uniform(0.5, 1.5)
                    await self.clock.sleep_until(self.clock.monotonic() + gap)
                    # A live burst is for a jittery cell; on a quiet link it ends as soon as
                    # probes stop gaining (ten receivers otherwise ask the server 5 times a
                    # second each for 13 s, for nothing).
                    if (live_burst and self.settled_for_live()) or not self.probe():
                        break
            else:
                self.probe()
            deadline = self.clock.monotonic() + self.next_gap()
            sleeper = asyncio.ensure_future(self.clock.sleep_until(deadline))
            waker = asyncio.ensure_future(self._burst.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()
