"""The NTP-style offset estimator and the probe loop, on virtual time."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import pytest

from audio.clock import FakeClock
from edge_agent.clocksync import (
    BURST,
    LIVE_BURST,
    MIN_BURST,
    ClockSync,
    OffsetEstimator,
    SlowestTrip,
)
from protocol import TimeRequest, TimeResponse

SERVER_AHEAD = 1_700_000_000.25  # server time - local monotonic time in these tests


def probe(
    est: OffsetEstimator, t0: float, up: float, down: float, server_hold: float = 0.001
) -> None:
    """One exchange with one-way delays `up` and `down` against the true offset."""
    t1 = t0 + up + SERVER_AHEAD
    t2 = t1 + server_hold
    t3 = t2 - SERVER_AHEAD + down
    assert est.add(t0=t0, t1=t1, t2=t2, t3=t3) is not None


def test_symmetric_delays_give_the_exact_offset_and_half_the_delay_as_error() -> None:
    est = OffsetEstimator(window_s=600)
    probe(est, 10.0, up=0.02, down=0.02)
    estimate = est.estimate(10.1)
    assert estimate is not None
    assert estimate.offset == pytest.approx(SERVER_AHEAD, abs=1e-6)
    assert estimate.error == pytest.approx(0.02, abs=1e-6)  # half the 40 ms round trip


def test_queued_probes_are_outvoted_by_the_fastest_ones() -> None:
    est = OffsetEstimator(window_s=600)
    for i in range(4):  # quick, nearly symmetric exchanges
        probe(est, 10.0 + i, up=0.005 + i * 0.0005, down=0.005)
    for i in range(12):  # each waited 200-500 ms in a queue on the way up: skewed offsets
        probe(est, 20.0 + i, up=0.2 + i * 0.025, down=0.005)
    estimate = est.estimate(40.0)
    assert estimate is not None and estimate.samples == 16
    assert abs(estimate.offset - SERVER_AHEAD) < 0.001  # a plain mean would be ~130 ms off
    assert estimate.error == pytest.approx(0.005, abs=1e-6)


def test_the_fastest_way_up_and_the_fastest_way_down_may_come_from_different_probes() -> None:
    est = OffsetEstimator(window_s=600)
    probe(est, 10.0, up=0.030, down=0.045)  # lucky up, queued down: offset 7.5 ms low
    probe(est, 11.0, up=0.045, down=0.030)  # the other way round: 7.5 ms high
    for i in range(6):  # both ways a little late, asymmetric: offsets 2.5-5 ms high
        probe(est, 12.0 + i, up=0.040 + i * 0.001, down=0.035)
    estimate = est.estimate(20.0)
    assert estimate is not None
    # 30 ms is each way's floor: the middle of what every probe allows is exact.
    assert estimate.offset == pytest.approx(SERVER_AHEAD, abs=1e-6)
    assert estimate.error == pytest.approx(0.030, abs=1e-6)


def test_samples_that_contradict_each_other_fall_back_to_the_fastest_ones() -> None:
    est = OffsetEstimator(window_s=600)
    for i in range(6):
        probe(est, 10.0 + i, up=0.005, down=0.005 + i * 0.0002)
    step = 0.2  # the server's clock then stepped 200 ms: no offset fits every probe
    for i in range(2):
        t0 = 20.0 + i
        t1 = t0 + 0.008 + SERVER_AHEAD + step
        assert est.add(t0=t0, t1=t1, t2=t1, t3=t1 - SERVER_AHEAD - step + 0.008) is not None
    estimate = est.estimate(30.0)
    assert estimate is not None
    assert abs(estimate.offset - SERVER_AHEAD) < 0.001  # the majority of fast probes wins
    assert estimate.error == pytest.approx(0.005, abs=1e-6)  # half the fastest delay


def test_old_samples_leave_the_window_and_impossible_ones_are_dropped() -> None:
    est = OffsetEstimator(window_s=60)
    probe(est, 0.0, up=0.01, down=0.01)
    assert est.estimate(30.0) is not None
    assert est.estimate(61.0) is None
    assert est.add(t0=10.0, t1=5.0, t2=6.0, t3=9.0) is None  # answered before it was asked
    assert est.add(t0=10.0, t1=6.0, t2=5.0, t3=11.0) is None  # server sent before receiving


def test_conversions_use_the_wall_clock_until_the_first_answer() -> None:
    clock = FakeClock(monotonic=500.0, wall=1_700_000_000.0)
    sent: list[TimeRequest] = []

    def send(request: TimeRequest) -> bool:
        sent.append(request)
        return True

    sync = ClockSync(clock=clock, send=send, interval_s=30, window_s=600)
    assert sync.estimate is None and sync.offset_ms() is None and sync.error_ms() is None
    assert sync.server_time() == clock.time()
    assert sync.to_monotonic(clock.time() + 5) == pytest.approx(505.0)

    assert sync.probe()
    request = sent[0]
    assert request.t0 == clock.time()  # the protocol's t0 is the device's wall time
    clock.advance(0.04)
    wall_minus_mono = 1_700_000_000.0 - 500.0
    server_receive = 500.02 + wall_minus_mono + 0.25  # the server is 250 ms ahead of the wall
    answer = TimeResponse(id=request.id, t0=request.t0, t1=server_receive, t2=server_receive)
    sync.on_response(answer, received=clock.monotonic())
    assert sync.offset_ms() == pytest.approx(250.0, abs=1e-3)
    assert sync.error_ms() == pytest.approx(20.0, abs=1e-3)
    server_at_600 = 600.0 + wall_minus_mono + 0.25
    assert sync.server_time(600.0) == pytest.approx(server_at_600)
    assert sync.to_monotonic(server_at_600) == pytest.approx(600.0)
    # An answer nobody asked for (or a repeat) changes nothing.
    sync.on_response(answer, received=clock.monotonic() + 5)
    assert sync.answers == 1


def test_a_burst_after_connecting_then_one_probe_per_interval() -> None:
    clock = FakeClock(monotonic=100.0, wall=1_700_000_000.0)
    sent: list[tuple[float, TimeRequest]] = []

    def send(request: TimeRequest) -> bool:
        sent.append((clock.monotonic(), request))
        return True

    sync = ClockSync(clock=clock, send=send, interval_s=30, window_s=600)

    async def scenario() -> None:
        sync.connected()
        task = asyncio.ensure_future(sync.run())
        await clock.sleep_until(100.0 + 105)  # the burst takes 2.4 to 7.2 s, then 3 probes
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(clock.run(scenario()))
    times = [t - 100.0 for t, _ in sent]
    burst, steady = times[:BURST], times[BURST:]
    gaps = [b - a for a, b in zip([0.0, *burst], burst, strict=False)]
    assert all(0.1 - 1e-9 <= gap <= 0.3 + 1e-9 for gap in gaps)  # jittered around 0.2 s
    assert len({round(g, 6) for g in gaps}) > 1  # devices do not probe in lockstep
    assert steady == pytest.approx([burst[-1] + 30 * k for k in range(1, 4)], abs=1e-9)


def test_nothing_is_sent_while_disconnected() -> None:
    clock = FakeClock()
    sync = ClockSync(clock=clock, send=lambda _r: False, interval_s=30, window_s=600)
    assert not sync.probe() and sync.probes_sent == 0


def _answer_after(clock: FakeClock, sync: ClockSync, rtts: list[float]) -> None:
    """Send one probe and answer it at once with the next symmetric round trip."""
    sent: list[TimeRequest] = []

    def send(request: TimeRequest) -> bool:
        sent.append(request)
        return True

    sync._send = send
    for rtt in rtts:
        assert sync.probe()
        t1 = clock.monotonic() + rtt / 2 + SERVER_AHEAD
        clock.advance(rtt)
        answer = TimeResponse(id=sent[-1].id, t0=sent[-1].t0, t1=t1, t2=t1)
        sync.on_response(answer, received=clock.monotonic())
        clock.advance(1.0)


def test_probing_is_fast_on_a_jittery_link_and_slow_on_a_quiet_one() -> None:
    clock = FakeClock()
    kwargs = {"interval_s": 30, "window_s": 600, "fast_interval_s": 5, "stable_error_s": 0.0002}
    quiet = ClockSync(clock=clock, send=lambda _r: True, **kwargs)
    assert quiet.next_gap() == 5  # nothing known yet
    _answer_after(clock, quiet, [0.010 + 0.0001 * (k % 3) for k in range(8)])
    assert quiet.next_gap() == 30  # round trips barely vary: more probes would not help
    jittery = ClockSync(clock=clock, send=lambda _r: True, **kwargs)
    _answer_after(clock, jittery, [0.060 + 0.030 * (k % 4) for k in range(8)])
    assert jittery.next_gap() == 5  # a 30 ms spread over 8 samples: keep probing


def test_while_live_a_jittery_link_is_probed_faster_and_a_quiet_one_still_settles() -> None:
    clock = FakeClock()
    kwargs = {
        "interval_s": 30, "window_s": 600, "fast_interval_s": 5, "stable_error_s": 0.0002,
        "live_interval_s": 0.5,
    }  # fmt: skip
    quiet = ClockSync(clock=clock, send=lambda _r: True, **kwargs)
    jittery = ClockSync(clock=clock, send=lambda _r: True, **kwargs)
    _answer_after(clock, quiet, [0.010 + 0.0001 * (k % 3) for k in range(8)])
    _answer_after(clock, jittery, [0.060 + 0.002 * (k % 4) for k in range(30)])
    assert jittery.next_gap() == 30  # 3 ms of spread over 30 samples: fine for schedules
    for sync in (quiet, jittery):
        sync.stream_arrival("loa/v1/zone/1/live/a", clock.monotonic())
    assert jittery.live() and jittery.next_gap() == 0.5  # not fine for live: keep probing
    assert quiet.next_gap() == 30  # 0.1 ms over 8 samples: nothing left to gain
    clock.advance(2.5)  # no frame for longer than a stall's worth
    assert not jittery.live() and jittery.next_gap() == 30


def test_a_live_session_starts_a_long_burst_then_probes_at_the_live_interval() -> None:
    clock = FakeClock(monotonic=100.0)
    sent: list[float] = []

    def send(_request: TimeRequest) -> bool:
        sent.append(clock.monotonic() - 100.0)
        return True

    sync = ClockSync(
        clock=clock, send=send, interval_s=30, window_s=600, fast_interval_s=5,
        live_interval_s=0.5,
    )  # fmt: skip

    async def frames(start: float, stop: float) -> None:
        t = start
        while t < stop:  # every 200 ms stands in for every 20 ms: both are no stall
            await clock.sleep_until(100.0 + t)
            sync.stream_arrival("loa/v1/zone/1/live/a", clock.monotonic())
            t += 0.2

    async def scenario() -> None:
        task = asyncio.ensure_future(sync.run())  # no answers: the link is unknown
        await frames(50.0, 130.0)  # longer than the burst
        await clock.sleep_until(100.0 + 150)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(clock.run(scenario()))
    before = [t for t in sent if t < 50]
    assert before == pytest.approx([5.0 * k for k in range(10)], abs=1e-9)  # fast interval
    during = [t for t in sent if 50 <= t < 132]
    burst, steady = during[:LIVE_BURST], during[LIVE_BURST:]
    assert burst[-1] - burst[0] < LIVE_BURST * 0.3  # the burst, as soon as frames came
    gaps = {round(b - a, 6) for a, b in pairwise(steady)}
    assert gaps == {0.5}  # then the live interval while frames keep coming
    assert steady[-1] > 130.0  # ... and until a stall's worth after the last one
    after = [t for t in sent if t >= 132]
    assert {round(b - a, 6) for a, b in pairwise(after)} == {5.0}


def test_on_a_quiet_link_the_live_burst_ends_once_probes_stop_gaining() -> None:
    clock = FakeClock(monotonic=100.0)
    sent: list[float] = []
    sync: ClockSync

    def send(request: TimeRequest) -> bool:
        at = clock.monotonic()
        sent.append(at - 100.0)
        rtt = 0.010 + 0.0001 * (len(sent) % 3)  # a LAN: round trips barely vary
        t1 = at + rtt / 2 + SERVER_AHEAD
        answer = TimeResponse(id=request.id, t0=request.t0, t1=t1, t2=t1)
        asyncio.get_running_loop().call_soon(lambda: sync.on_response(answer, received=at + rtt))
        return True

    sync = ClockSync(
        clock=clock, send=send, interval_s=30, window_s=600, fast_interval_s=5,
        stable_error_s=0.0002, live_interval_s=0.5,
    )  # fmt: skip

    async def scenario() -> None:
        sync.connected()
        task = asyncio.ensure_future(sync.run())
        t = 50.0
        while t < 80.0:  # frames from 50 s to 80 s
            await clock.sleep_until(100.0 + t)
            sync.stream_arrival("loa/v1/zone/1/live/a", clock.monotonic())
            t += 0.2
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(clock.run(scenario()))
    assert len([t for t in sent if t < 50]) >= BURST  # the connect burst ran whole
    during = [t for t in sent if t >= 50]
    assert len(during) <= 2  # settled already: not a burst of LIVE_BURST probes
    assert sync.settled_for_live()


def test_a_clock_step_drops_older_samples_and_triggers_a_burst() -> None:
    clock = FakeClock()
    sync = ClockSync(clock=clock, send=lambda _r: True, interval_s=30, window_s=600)
    _answer_after(clock, sync, [0.020] * 5)
    before = sync.estimate
    assert before is not None and before.samples == 5 and not sync._burst.is_set()
    global SERVER_AHEAD
    saved, SERVER_AHEAD = SERVER_AHEAD, SERVER_AHEAD + 0.5  # the server clock steps 500 ms
    try:
        _answer_after(clock, sync, [0.020])
    finally:
        SERVER_AHEAD = saved
    after = sync.estimate
    assert after is not None and after.samples == 1  # only the post-step sample counts
    assert after.offset == pytest.approx(before.offset + 0.5, abs=1e-6)
    assert sync.jumps == 1 and sync._burst.is_set()


def test_a_reconnect_with_samples_in_the_window_sends_a_short_burst() -> None:
    clock = FakeClock()
    sent: list[float] = []
    sync = ClockSync(clock=clock, send=lambda _r: True, interval_s=30, window_s=600)
    _answer_after(clock, sync, [0.020] * BURST)  # a full window's worth from before

    def send(_request: TimeRequest) -> bool:
        sent.append(clock.monotonic())
        return True

    sync._send = send

    async def scenario() -> None:
        start = clock.monotonic()
        sync.connected()
        task = asyncio.ensure_future(sync.run())
        await clock.sleep_until(start + 20)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(clock.run(scenario()))
    assert len(sent) == MIN_BURST  # the held samples still count: no herd after a broker restart


def test_round_trips_report_the_median_and_the_slow_tail_of_the_window() -> None:
    est = OffsetEstimator(window_s=60)
    probe(est, 1.0, up=0.1, down=0.1)
    probe(est, 2.0, up=0.1, down=0.1)
    assert est.round_trips(2.5) is None  # too few probes to say anything about the link
    for i in range(18):  # 200-370 ms round trips, a 4G cell
        probe(est, 3.0 + i, up=0.1 + i * 0.005, down=0.1 + i * 0.005, server_hold=0.0)
    trips = est.round_trips(25.0)
    assert trips is not None
    median, p95 = trips
    assert median == pytest.approx(0.2 + 0.002 + 7 * 0.01, abs=0.011)
    assert p95 == pytest.approx(0.37, abs=0.011) and p95 > median
    assert est.round_trips(200.0) is None  # the window moved past them all


def test_the_slowest_trip_of_the_hour_is_a_stall_the_p95_never_shows() -> None:
    est, slowest = OffsetEstimator(window_s=600), SlowestTrip(memory_s=3600)
    assert slowest.value(1.0) is None
    for i in range(60):  # 200 ms round trips, one probe answered after a 3 s hand-over stall
        stalled = i == 30
        probe(est, 1.0 + i * 10, up=0.1, down=3.1 if stalled else 0.1, server_hold=0.0)
        slowest.add(at=1.0 + i * 10, delay=3.2 if stalled else 0.2)
    trips = est.round_trips(600.0)
    assert trips is not None and trips[1] == pytest.approx(0.2, abs=0.001)  # p95: no stall
    assert slowest.value(600.0) == pytest.approx(3.2)
    assert slowest.value(301.0 + 3601) == pytest.approx(0.2)  # an hour on, it is forgotten
    slowest.add(at=4000.0, delay=0.1)
    assert slowest.value(4000.0) == pytest.approx(0.2)  # the slower, still remembered, rules


def test_a_gap_inside_a_live_stream_is_remembered_as_a_stall() -> None:
    clock = FakeClock()
    sync = ClockSync(clock=clock, send=lambda _r: True, interval_s=30, window_s=600)
    t = clock.monotonic()
    for k in range(50):  # frames every 20 ms, then a 3 s hand-over, then frames again
        sync.stream_arrival("loa/v1/zone/1/live/a", t + k * 0.02)
    sync.stream_arrival("loa/v1/zone/1/live/a", t + 0.98 + 3.0)
    sync.stream_arrival("loa/v1/zone/1/live/a", t + 0.98 + 3.02)
    clock.advance(5.0)
    assert sync.link_max_ms() == pytest.approx(3000.0, abs=0.1)  # no probes yet: gap alone
    # Another session's first frame, minutes after the last one, is no stall.
    sync.stream_arrival("loa/v1/zone/1/live/b", t + 300.0)
    assert sync.link_max_ms() == pytest.approx(3000.0, abs=0.1)


def test_an_answer_held_behind_a_live_frame_bounds_the_offset_only_from_above() -> None:
    est = OffsetEstimator(window_s=600)
    probe(est, 1.0, up=0.060, down=0.062)
    probe(est, 2.0, up=0.061, down=0.060)
    fair = est.estimate(3.0)
    assert fair is not None and fair.offset == pytest.approx(SERVER_AHEAD, abs=0.001)
    # Its own way down was fast, but it came out with the frame ahead of it, 30 ms later.
    t1 = 3.0 + 0.060 + SERVER_AHEAD
    est.add(t0=3.0, t1=t1, t2=t1, t3=t1 - SERVER_AHEAD + 0.090, held=True)
    kept = est.estimate(4.0)
    assert kept is not None and kept.offset == pytest.approx(fair.offset, abs=1e-9)
    t1 = 5.0 + 0.059 + SERVER_AHEAD  # a held answer whose way up was the fastest yet
    est.add(t0=5.0, t1=t1, t2=t1, t3=t1 - SERVER_AHEAD + 0.090, held=True)
    tighter = est.estimate(6.0)
    assert tighter is not None and tighter.error < fair.error  # its upper bound still counts
    assert tighter.offset == pytest.approx(SERVER_AHEAD, abs=0.001)


def test_the_sync_marks_an_answer_that_arrives_with_a_live_frame_as_held() -> None:
    clock = FakeClock()
    sync = ClockSync(clock=clock, send=lambda _r: True, interval_s=30, window_s=600)
    sent: list[TimeRequest] = []
    sync._send = lambda r: sent.append(r) or True
    for gap in (0.0005, 0.010):  # on the heels of a frame, then well apart from one
        assert sync.probe()
        t1 = clock.monotonic() + 0.05 + SERVER_AHEAD
        clock.advance(0.1)
        sync.stream_arrival("loa/v1/zone/1/live/a", clock.monotonic())
        clock.advance(gap)
        sync.on_response(
            TimeResponse(id=sent[-1].id, t0=sent[-1].t0, t1=t1, t2=t1), received=clock.monotonic()
        )
    assert [s.held for s in sync.estimator._samples] == [True, False]


def test_live_frames_send_times_sharpen_the_way_down() -> None:
    clock = FakeClock()
    sync = ClockSync(clock=clock, send=lambda _r: True, interval_s=30, window_s=600)
    _answer_after(clock, sync, [0.200] * 3)  # 100 ms each way: +-100 ms
    sent: list[TimeRequest] = []
    sync._send = lambda r: sent.append(r) or True
    wide = sync.estimate
    assert wide is not None and wide.error == pytest.approx(0.100, abs=1e-6)
    for way_down in (0.080, 0.031, 0.050):  # frames: the server clock was at least `sent`
        at = clock.monotonic()
        sync.frame_sent(at + SERVER_AHEAD - way_down, at)
        clock.advance(0.02)
    # An answer whose way up took 30 ms folds the frames' best bound in.
    assert sync.probe()
    t1 = clock.monotonic() + 0.030 + SERVER_AHEAD
    clock.advance(0.230)  # its way down was held up for 200 ms
    sync.on_response(
        TimeResponse(id=sent[-1].id, t0=sent[-1].t0, t1=t1, t2=t1), received=clock.monotonic()
    )
    sharp = sync.estimate
    assert sharp is not None
    assert sharp.error == pytest.approx((0.030 + 0.031) / 2, abs=1e-6)
    assert sharp.offset == pytest.approx(SERVER_AHEAD + (0.030 - 0.031) / 2, abs=1e-6)
    clock.advance(601)  # the frames' bounds leave the window with the samples
    assert sync.estimator.estimate(clock.monotonic()) is None
    assert not sync.estimator._floors
