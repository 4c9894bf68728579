"""Jitter buffer under synthetic networks: jitter, reordering, loss, bursts, late and wild frames,
and a device clock drifting +-100 ppm from the server clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from audio.jitter import Arrival, JitterBuffer
from audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm, from_bytes, silence, to_bytes
from audio.signals import find_markers, make_marker, marker_track

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
CAPTURE_0 = 10_000.0  # server clock of frame 0
PLAYOUT_DELAY = 0.3
PULL_AHEAD = 0.1  # the sink buffer: audio is pulled this long before the device plays it


def raw_decode(payload: bytes | None) -> Pcm:
    """The payload is plain s16le here, so what comes out can be checked sample for sample."""
    return silence(FRAME_SAMPLES) if payload is None else from_bytes(payload)


@dataclass
class Session:
    output: Pcm
    device_time: Callable[[float], float]  # output sample index -> server time it is consumed
    buffer: JitterBuffer
    pull_sizes: list[int]


def simulate(
    source: Pcm,
    arrival: Callable[[int], float | None],
    *,
    ppm: float = 0.0,
) -> Session:
    """Send `source` frame by frame; the device pulls while whole pulls fit in the source."""
    frames = [source[i : i + FRAME_SAMPLES] for i in range(0, len(source), FRAME_SAMPLES)]
    packets = sorted(
        (at, n) for n in range(len(frames)) if (at := arrival(n)) is not None
    )  # (arrival server time, frame number)
    buffer = JitterBuffer(decode=raw_decode, playout_delay_s=PLAYOUT_DELAY)
    device_start = CAPTURE_0 + 0.05
    rate = SAMPLE_RATE * (1 + ppm * 1e-6)  # a fast device consumes more samples per second

    def device_time(k: float) -> float:
        return device_start + k / rate

    end = CAPTURE_0 + len(frames) * FRAME_S + PLAYOUT_DELAY  # when the last sample is done
    out: list[Pcm] = []
    produced, sent = 0, 0
    sizes = []
    while device_time(produced + FRAME_SAMPLES) <= end + 1e-9:
        now = device_time(produced)
        while sent < len(packets) and packets[sent][0] <= now - PULL_AHEAD:
            n = packets[sent][1]
            buffer.push(n, CAPTURE_0 + n * FRAME_S, to_bytes(frames[n]), now=now)
            sent += 1
        chunk = buffer.pull(now=now)
        out.append(chunk)
        sizes.append(len(chunk))
        produced += len(chunk)
    return Session(np.concatenate(out), device_time, buffer, sizes)


def marked_source(seconds: float, marks_s: list[float]) -> tuple[Pcm, Pcm]:
    marker = make_marker(duration_s=0.03, seed=3)
    return marker, marker_track(duration_s=seconds, marker_times_s=marks_s, marker=marker)


def heard_times(session: Session, marker: Pcm) -> list[float]:
    """Server times at which each marker in the output reaches the device."""
    return [session.device_time(k) for k in find_markers(session.output, marker)]


def test_in_order_stream_plays_every_frame_at_capture_plus_delay() -> None:
    marks = [0.5, 1.5, 2.5]
    marker, source = marked_source(3.0, marks)
    session = simulate(source, lambda n: CAPTURE_0 + n * FRAME_S + 0.03)
    stats = session.buffer.stats
    assert stats.played == len(source) // FRAME_SAMPLES
    assert stats.concealed == stats.late == stats.reordered == 0
    expected = [CAPTURE_0 + t + PLAYOUT_DELAY for t in marks]
    assert heard_times(session, marker) == pytest.approx(expected, abs=1 / SAMPLE_RATE)


def test_jitter_and_reordering_change_nothing_that_is_heard() -> None:
    marks = [0.4, 1.3, 2.2, 3.1]
    marker, source = marked_source(3.5, marks)
    rng = np.random.default_rng(1)
    delays = rng.uniform(0.01, 0.19, len(source) // FRAME_SAMPLES)  # up to 9 frames of jitter
    jittery = simulate(source, lambda n: CAPTURE_0 + n * FRAME_S + delays[n])
    steady = simulate(source, lambda n: CAPTURE_0 + n * FRAME_S + 0.05)
    assert jittery.buffer.stats.reordered > 20
    assert jittery.buffer.stats.concealed == jittery.buffer.stats.late == 0
    np.testing.assert_array_equal(jittery.output, steady.output)
    expected = [CAPTURE_0 + t + PLAYOUT_DELAY for t in marks]
    assert heard_times(jittery, marker) == pytest.approx(expected, abs=1 / SAMPLE_RATE)


def test_lost_frames_are_concealed_and_the_timeline_holds() -> None:
    marks = [0.5, 2.5]
    marker, source = marked_source(3.0, marks)
    n_frames = len(source) // FRAME_SAMPLES
    rng = np.random.default_rng(2)
    lost = set(rng.choice(np.arange(30, 120), size=12, replace=False).tolist())
    session = simulate(source, lambda n: None if n in lost else CAPTURE_0 + n * FRAME_S + 0.04)
    stats = session.buffer.stats
    assert stats.concealed == len(lost)
    assert stats.played == n_frames - len(lost)
    assert heard_times(session, marker) == pytest.approx(
        [CAPTURE_0 + t + PLAYOUT_DELAY for t in marks], abs=1 / SAMPLE_RATE
    )


def test_late_frames_are_dropped_and_counted() -> None:
    _, source = marked_source(2.0, [0.5])
    late = {40, 41, 42, 77}
    session = simulate(
        source,
        lambda n: CAPTURE_0 + n * FRAME_S + (0.5 if n in late else 0.04),  # after their slot
    )
    stats = session.buffer.stats
    assert stats.late == len(late)
    assert stats.concealed == len(late)  # their slots were filled when they were missing
    assert stats.played == len(source) // FRAME_SAMPLES - len(late)


def test_a_burst_after_a_stall_is_played_in_time() -> None:
    marks = [0.6, 1.6]
    marker, source = marked_source(2.0, marks)

    def arrival(n: int) -> float:
        captured = CAPTURE_0 + n * FRAME_S
        stalled = 0.5 <= n * FRAME_S < 0.68  # the network holds these, then delivers at once
        return CAPTURE_0 + 0.69 if stalled else captured + 0.01

    session = simulate(source, arrival)
    assert session.buffer.stats.concealed == session.buffer.stats.late == 0
    assert heard_times(session, marker) == pytest.approx(
        [CAPTURE_0 + t + PLAYOUT_DELAY for t in marks], abs=1 / SAMPLE_RATE
    )


def test_a_sequence_far_in_the_future_is_ignored_without_allocating() -> None:
    buffer = JitterBuffer(decode=raw_decode, playout_delay_s=PLAYOUT_DELAY)
    payload = to_bytes(silence(FRAME_SAMPLES))
    assert buffer.push(100, CAPTURE_0, payload, now=CAPTURE_0) is Arrival.ACCEPTED
    assert buffer.push(100 + 501, CAPTURE_0, payload, now=CAPTURE_0) is Arrival.FUTURE
    assert buffer.push(2**40, CAPTURE_0, payload, now=CAPTURE_0) is Arrival.FUTURE
    assert buffer.push(100, CAPTURE_0, payload, now=CAPTURE_0) is Arrival.DUPLICATE
    assert buffer.push(99, CAPTURE_0 - FRAME_S, payload, now=CAPTURE_0) is Arrival.REORDERED
    assert buffer.buffered == 2
    buffer.pull(now=CAPTURE_0 + 5)  # playing now: the reference is the play cursor
    assert buffer.push(2**40, CAPTURE_0, payload, now=CAPTURE_0 + 5) is Arrival.FUTURE
    assert buffer.stats.dropped_future == 3
    assert buffer.stats.received == 6


@pytest.mark.parametrize("ppm", [100.0, -100.0])
def test_clock_drift_is_corrected_a_sample_at_a_time(ppm: float) -> None:
    seconds = 40.0
    marks = [1.0, 10.0, 20.0, 30.0, 39.0]
    marker, source = marked_source(seconds, marks)
    session = simulate(source, lambda n: CAPTURE_0 + n * FRAME_S + 0.04, ppm=ppm)
    stats = session.buffer.stats
    drift_samples = abs(ppm) * 1e-6 * seconds * SAMPLE_RATE  # 192 samples over 40 s
    corrected = stats.inserted_samples if ppm > 0 else stats.dropped_samples
    assert corrected == pytest.approx(drift_samples, abs=15)
    assert (stats.dropped_samples if ppm > 0 else stats.inserted_samples) == 0
    # Never more than one sample per 10 ms: a 20 ms pull is 960 +- 2 samples at most.
    sizes = session.pull_sizes
    aligning = next(i for i, size in enumerate(sizes) if size < FRAME_SAMPLES - 2)
    assert sizes[:aligning] == [FRAME_SAMPLES] * aligning  # silence until the stream is due
    assert all(abs(size - FRAME_SAMPLES) <= 2 for size in sizes[aligning + 1 :])
    # Without correction the last marker would be 4 ms off; with it, within the tolerance.
    expected = [CAPTURE_0 + t + PLAYOUT_DELAY for t in marks]
    assert heard_times(session, marker) == pytest.approx(expected, abs=0.00025)
    assert stats.concealed == stats.late == stats.resyncs == 0


def test_a_jump_of_the_server_clock_resynchronises_in_one_step() -> None:
    buffer = JitterBuffer(decode=raw_decode, playout_delay_s=PLAYOUT_DELAY)
    for n in range(100):
        buffer.push(n, CAPTURE_0 + n * FRAME_S, to_bytes(silence(FRAME_SAMPLES) + n), now=0.0)
    start = CAPTURE_0 + PLAYOUT_DELAY
    assert len(buffer.pull(now=start)) == FRAME_SAMPLES
    # The offset estimate jumps 200 ms: the buffer skips 10 frames instead of slewing for minutes.
    chunk = buffer.pull(now=start + FRAME_S + 0.2)
    assert buffer.stats.resyncs == 1 and buffer.stats.skipped == 10
    assert int(chunk[0]) == 11
    assert buffer.error_s == pytest.approx(0.0, abs=1 / SAMPLE_RATE)


def test_a_pull_never_reaches_into_the_next_frame_so_it_may_arrive_until_it_is_due() -> None:
    """40 ms frames: a pull that drops samples ends at the frame's end, not in the next one.

    Taking a few samples of frame n+1 with frame n would need frame n+1 a whole frame before
    its first sample is due: with 40 ms frames, more than a 200 ms playout delay leaves.
    """
    frame = 2 * FRAME_SAMPLES
    frame_s = frame / SAMPLE_RATE
    buffer = JitterBuffer(decode=raw_decode, playout_delay_s=PLAYOUT_DELAY, frame_samples=frame)
    start = CAPTURE_0 + PLAYOUT_DELAY
    buffer.push(0, CAPTURE_0, to_bytes(silence(frame) + 1), now=0.0)
    assert len(buffer.pull(now=start)) == frame
    buffer.push(1, CAPTURE_0 + frame_s, to_bytes(silence(frame) + 2), now=0.0)
    # The device clock runs a little fast: frame 1 is due 1 ms before the device asks for it.
    chunk = buffer.pull(now=start + frame_s + 0.001)
    assert buffer.stats.dropped_samples > 0
    assert len(chunk) == frame - buffer.stats.dropped_samples and set(chunk.tolist()) == {2}
    # Frame 2 arrives now, before its first sample is due: it is played, not late.
    assert buffer.push(2, CAPTURE_0 + 2 * frame_s, to_bytes(silence(frame) + 3), now=0.0) is (
        Arrival.ACCEPTED
    )
    assert set(buffer.pull(now=start + 2 * frame_s + 0.001).tolist()) == {3}
    assert buffer.stats.late == buffer.stats.concealed == 0
