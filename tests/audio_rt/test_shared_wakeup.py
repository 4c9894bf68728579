"""A raw sink's writer and device wake together, once per block, and still never run dry."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from audio.clock import FakeClock
from audio.pcm import SAMPLE_RATE
from audio.sinks import RawSink
from tests.audio_rt.helpers import run, tone

BLOCK = 960


class _RecordingClock(FakeClock):
    """A FakeClock that remembers every deadline slept until."""

    def __init__(self) -> None:
        super().__init__()
        self.deadlines: list[float] = []

    async def sleep_until(self, monotonic_deadline: float) -> None:
        self.deadlines.append(monotonic_deadline)
        await super().sleep_until(monotonic_deadline)


def test_writer_and_device_share_one_wake_up_per_block(tmp_path: Path) -> None:
    clock = _RecordingClock()
    raw = tmp_path / "out.pcm"
    sink = RawSink(raw, clock, buffer_frames=3 * BLOCK, period_frames=BLOCK)
    audio = tone(SAMPLE_RATE)  # 1 s, written frame by frame like the live receiver
    # Not always whole blocks: the jitter buffer adds or drops a sample to follow drift, and
    # starts with a piece of silence to align the first sample.
    sizes = [700, *([961, 959, 960, 962, 958] * 10)]
    sizes.append(len(audio) - sum(sizes))
    start = clock.monotonic()
    gaps: list[int] = []  # samples queued whenever the writer got to write

    async def scenario() -> None:
        await sink.start()
        done = 0
        for size in sizes:
            gaps.append(sink.frames_written - sink.frames_played)
            await sink.write(audio[done : done + size])
            done += size
        await sink.close()

    run(clock.run(scenario()))
    instants = sorted({round((d - start) * SAMPLE_RATE) for d in clock.deadlines if d > start})
    blocks = len(audio) // BLOCK
    # Every wake-up is a block end, none between (close drains the last blocks in one sleep).
    assert [i for i in instants if i % BLOCK] == []
    assert instants[: blocks - 3] == [BLOCK * k for k in range(1, blocks - 2)]
    assert min(gaps[3:]) >= BLOCK  # never less than a block queued once streaming
    np.testing.assert_array_equal(np.frombuffer(raw.read_bytes(), dtype="<i2"), audio)


class _LatestFirstClock(_RecordingClock):
    """Sleepers due at the same instant wake latest-registered first (the device task first)."""

    def __init__(self) -> None:
        super().__init__()
        self._order = itertools.count(0, -1)


def test_the_device_does_not_wake_apart_when_it_runs_before_the_writer(tmp_path: Path) -> None:
    # At a block end the device task may run before the writer has topped the buffer up: it
    # then sees the buffer end short of the next block end, and must not wake there too.
    clock = _LatestFirstClock()
    raw = tmp_path / "out.pcm"
    sink = RawSink(
        raw, clock, buffer_frames=4 * BLOCK, period_frames=BLOCK, hand_on_frames=2 * BLOCK
    )
    audio = tone(SAMPLE_RATE)
    sizes = [700, *([BLOCK] * 48)]  # frames offset from the block grid, as in live audio
    sizes.append(len(audio) - sum(sizes))
    start = clock.monotonic()

    async def scenario() -> None:
        await sink.start()
        done = 0
        for size in sizes:
            await sink.write(audio[done : done + size])
            done += size
        await sink.close()

    run(clock.run(scenario()))
    instants = sorted({round((d - start) * SAMPLE_RATE) for d in clock.deadlines if d > start})
    streaming = [i for i in instants if i < len(audio) - 4 * BLOCK]  # before close drains
    assert streaming == [2 * BLOCK * k for k in range(1, len(streaming) + 1)]
    np.testing.assert_array_equal(np.frombuffer(raw.read_bytes(), dtype="<i2"), audio)
