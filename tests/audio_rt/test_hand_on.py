"""Raw outputs are handed on block by block at the sample clock's instants, in one write each."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from audio.clock import FakeClock
from audio.pcm import SAMPLE_RATE
from audio.sinks import ClockedFileSink, RawSink
from tests.audio_rt.helpers import run, tone

BLOCK = 960


def _sink(kind: str, tmp_path: Path, clock: FakeClock, raw: Path) -> RawSink | ClockedFileSink:
    if kind == "raw":
        return RawSink(raw, clock, buffer_frames=2400, period_frames=480)
    return ClockedFileSink(
        tmp_path / "o.wav", tmp_path / "o.jsonl", clock, raw_pcm_path=raw,
        buffer_frames=2400, period_frames=480,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["raw", "file"])
def test_each_block_is_handed_on_when_it_has_played_and_not_before(
    kind: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    raw = tmp_path / "out.pcm"
    sink = _sink(kind, tmp_path, clock, raw)
    audio = tone(SAMPLE_RATE // 4)  # 250 ms, written in 10 ms periods by the writer
    sizes: list[tuple[int, int]] = []  # (bytes just before block k ends, bytes just after)

    async def watch(start: float) -> None:
        for k in range(1, 12):
            end = start + k * BLOCK / SAMPLE_RATE
            await clock.sleep_until(end - 0.0005)
            before = raw.stat().st_size
            await clock.sleep_until(end + 0.0005)
            sizes.append((before, raw.stat().st_size))

    async def scenario() -> None:
        await sink.start()
        start = clock.monotonic()
        watcher = asyncio.create_task(watch(start))
        await sink.write(audio)
        await watcher
        await sink.close()

    run(clock.run(scenario()))
    for k, (before, after) in enumerate(sizes, start=1):
        # Nothing of block k reaches the reader before it has played; all of it right after,
        # although the writer's own wake-ups advanced the device model in between.
        assert before == 2 * BLOCK * (k - 1), (k, sizes)
        assert after == 2 * BLOCK * k, (k, sizes)
    np.testing.assert_array_equal(np.frombuffer(raw.read_bytes(), dtype="<i2"), audio)


def test_the_tail_is_handed_on_when_the_device_runs_dry(tmp_path: Path) -> None:
    clock = FakeClock()
    raw = tmp_path / "tail.pcm"
    sink = RawSink(raw, clock, buffer_frames=2400, period_frames=480)
    audio = tone(BLOCK + 300)  # one block and a bit
    seen: list[int] = []

    async def scenario() -> None:
        await sink.start()
        start = clock.monotonic()
        await sink.write(audio)
        await clock.sleep_until(start + len(audio) / SAMPLE_RATE + 0.0005)
        seen.append(raw.stat().st_size)  # the device task handed on the tail as it ran dry
        await asyncio.sleep(0)
        await sink.close(drain=False)

    run(clock.run(scenario()))
    assert seen == [2 * len(audio)]
