"""The same behaviour from every sink: ClockedFileSink, NullSink and AlsaSink on ALSA's null PCM."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from audio.clock import FakeClock, SystemClock
from audio.pcm import SAMPLE_RATE, silence
from audio.sinks import AudioSink, SinkError
from tests.audio_rt.helpers import SINK_KINDS, make_sink, run, tone

FRAME = 960
BUFFER_S = 4800 / SAMPLE_RATE


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_writes_are_paced_in_real_time(kind: str, tmp_path: Path) -> None:
    clock = SystemClock()
    sink = make_sink(kind, clock, tmp_path)
    audio_s = 0.6

    async def scenario() -> tuple[float, float]:
        await sink.start()
        began = time.monotonic()
        for _ in range(round(audio_s * SAMPLE_RATE / FRAME)):
            await sink.write(tone(FRAME))
        written = time.monotonic() - began
        await sink.close()
        return written, time.monotonic() - began

    written, total = run(scenario())
    # The last write returns once everything but one buffer has been consumed ...
    assert audio_s - BUFFER_S - 0.03 <= written <= audio_s - BUFFER_S + 0.25
    # ... and a draining close returns when the device has played the last sample.
    assert audio_s - 0.01 <= total <= audio_s + 0.3


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_pacing_is_exact_on_a_fake_clock(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    sink = make_sink(kind, clock, tmp_path)
    start = clock.monotonic()
    returns: list[float] = []

    async def scenario() -> None:
        await sink.start()
        for _ in range(50):  # one second
            await sink.write(tone(FRAME))
            returns.append(clock.monotonic() - start)
        await sink.close()

    run(clock.run(scenario()))
    # The first five frames fill the 100 ms buffer without waiting; then one frame per 20 ms.
    assert returns[:5] == [0.0] * 5
    assert returns[5:] == pytest.approx([(i - 4) * 0.02 for i in range(5, 50)], abs=1e-9)
    assert clock.monotonic() - start == pytest.approx(1.0, abs=1e-9)
    assert sink.frames_played == sink.frames_written == 50 * FRAME


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_frames_written_counts_every_sample(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    sink = make_sink(kind, clock, tmp_path)

    async def scenario() -> None:
        await sink.start()
        for size in (FRAME, 1, 5000, 0, 333):
            await sink.write(tone(size))
        assert sink.frames_written == FRAME + 1 + 5000 + 333
        # play_at counts the silence it inserts before the item, too.
        at = sink.next_sample_monotonic() + 0.05
        await sink.play_at(tone(FRAME), at)
        assert sink.frames_written == FRAME + 1 + 5000 + 333 + round(0.05 * SAMPLE_RATE) + FRAME
        await sink.close()

    run(clock.run(scenario()))
    assert sink.frames_played == sink.frames_written


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_a_device_that_ran_dry_and_started_again_counts_a_restart(
    kind: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    sink = make_sink(kind, clock, tmp_path)

    async def scenario() -> None:
        await sink.start()
        for _ in range(10):  # back to back: one segment
            await sink.write(tone(FRAME))
        assert sink.restarts == 0
        await clock.sleep_until(sink.next_sample_monotonic() + 0.05)  # the writer fell behind
        await sink.write(tone(FRAME))
        assert sink.restarts == 1
        await sink.close()

    run(clock.run(scenario()))


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_close_is_idempotent_and_writing_after_it_fails(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    sink = make_sink(kind, clock, tmp_path)

    async def scenario() -> None:
        await sink.start()
        await sink.write(tone(FRAME))
        await sink.close()
        await sink.close()
        assert sink.closed
        with pytest.raises(SinkError, match="closed"):
            await sink.write(tone(FRAME))
        with pytest.raises(SinkError, match="closed"):
            await sink.play_at(tone(FRAME), clock.monotonic() + 1)
        with pytest.raises(SinkError, match="closed"):
            await sink.start()

    run(clock.run(scenario()))
    assert sink.frames_written == FRAME


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_writing_before_start_fails(kind: str, tmp_path: Path) -> None:
    sink = make_sink(kind, FakeClock(), tmp_path)
    with pytest.raises(SinkError, match="not started"):
        run(sink.write(tone(FRAME)))
    with pytest.raises(TypeError, match="int16"):
        run(sink.write(np.zeros(10, dtype=np.float32)))


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_play_at_starts_on_the_sample_whether_running_or_stopped(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    sink: AudioSink = make_sink(kind, clock, tmp_path)  # mypy: every sink fits the protocol

    async def scenario() -> list[float]:
        await sink.start()
        errors: list[float] = []
        # Device stopped, item far ahead: the sink waits, then starts it exactly.
        placed = await sink.play_at(tone(FRAME), clock.monotonic() + 12.345678)
        errors.append(placed.error_s)
        # Device running (still playing the previous item): silence fills the gap exactly.
        placed = await sink.play_at(tone(FRAME), sink.next_sample_monotonic() + 0.0123456)
        errors.append(placed.error_s)
        # Right after the previous one, with no gap at all.
        placed = await sink.play_at(tone(FRAME), sink.next_sample_monotonic())
        errors.append(placed.error_s)
        await sink.close()
        return errors

    errors = run(clock.run(scenario()))
    assert all(abs(e) <= 0.5 / SAMPLE_RATE + 1e-9 for e in errors), errors


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_a_missed_start_is_late_not_trimmed(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    sink = make_sink(kind, clock, tmp_path)

    async def scenario() -> float:
        await sink.start()
        asked = clock.monotonic() + 0.01
        clock.advance(0.25)  # the player was held up past the instant
        placed = await sink.play_at(tone(FRAME), asked)
        assert placed.start_monotonic == pytest.approx(clock.monotonic())
        before = sink.frames_written
        await sink.close()
        assert before == FRAME
        return placed.error_s

    assert run(clock.run(scenario())) == pytest.approx(0.24)


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_close_without_draining_returns_at_once(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    sink = make_sink(kind, clock, tmp_path)

    async def scenario() -> None:
        await sink.start()
        await sink.write(silence(4800))
        await sink.close(drain=False)

    start = clock.monotonic()
    run(clock.run(scenario()))
    assert clock.monotonic() == start
    assert sink.frames_played == 0


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_output_latency_is_taken_off_the_start(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    sink = make_sink(kind, clock, tmp_path, output_latency_s=0.005)

    async def scenario() -> int:
        await sink.start()
        await sink.write(silence(FRAME))
        device_next = sink.next_sample_monotonic()
        placed = await sink.play_at(tone(FRAME), device_next + 0.025)
        await sink.close()
        assert placed.start_monotonic == pytest.approx(device_next + 0.025, abs=1e-9)
        return placed.sample_offset

    # Heard 25 ms after the next sample is consumed, with 5 ms of output latency: 20 ms of gap.
    assert run(clock.run(scenario())) == FRAME + FRAME
