"""ClockedFileSink: the recording, its timing lines, crash safety and the raw PCM FIFO."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audio.clock import FakeClock, SystemClock
from audio.decode import decode_to_pcm
from audio.pcm import SAMPLE_RATE, Pcm, silence
from audio.sinks import ClockedFileSink
from tests.audio_rt.helpers import run, tone

FRAME = 960


def read_wav(path: Path) -> Pcm:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, SAMPLE_RATE)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)


def read_timing(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_recording_holds_exactly_what_was_played_and_when(tmp_path: Path) -> None:
    clock = FakeClock(monotonic=500.0, wall=1_750_000_000.0)
    sink = ClockedFileSink(tmp_path / "a.wav", tmp_path / "a.jsonl", clock)
    first, second, live = tone(4800, freq=300), tone(9600, freq=700), tone(FRAME, freq=1000)

    async def scenario() -> None:
        await sink.start()
        await sink.play_at(first, 501.0, label="first")
        await sink.play_at(second, 501.13, label="second")  # 30 ms of silence in between
        await sink.play_at(live[:0], 530.0, label="")  # an empty item is only a mark
        for _ in range(3):
            await sink.write(live)
        await sink.close()

    run(clock.run(scenario()))
    recorded = read_wav(tmp_path / "a.wav")
    gap = silence(round(0.03 * SAMPLE_RATE))
    # A device left idle stops; it restarts half a buffer (50 ms) before the next item.
    preroll = silence(2400)
    expected = np.concatenate([preroll, first, gap, second, preroll, live, live, live])
    np.testing.assert_array_equal(recorded, expected)
    # A real tool reads the same file the same way.
    np.testing.assert_array_equal(decode_to_pcm(tmp_path / "a.wav"), expected)

    lines = read_timing(tmp_path / "a.jsonl")
    assert [line["event"] for line in lines] == [
        "segment", "item", "item", "segment_end", "segment", "item", "segment_end", "close",
    ]  # fmt: skip
    items = [line for line in lines if line["event"] == "item"]
    assert [i["label"] for i in items] == ["first", "second", ""]
    assert [i["sample_offset"] for i in items] == [
        2400, 2400 + 4800 + len(gap), len(expected) - 3 * FRAME,
    ]  # fmt: skip
    assert [i["start_monotonic"] for i in items] == pytest.approx([501.0, 501.13, 530.0])
    assert [i["start_wall"] for i in items] == pytest.approx(
        [1_750_000_001.0, 1_750_000_001.13, 1_750_000_030.0]
    )
    assert [i["error_s"] for i in items] == pytest.approx([0, 0, 0], abs=1e-9)
    segments = [line for line in lines if line["event"] == "segment"]
    assert [s["start_monotonic"] for s in segments] == pytest.approx([500.95, 529.95])
    ends = [line for line in lines if line["event"] == "segment_end"]
    assert ends[0]["end_monotonic"] == pytest.approx(501.13 + 9600 / SAMPLE_RATE)
    assert ends[1]["sample_offset"] == len(expected)
    assert lines[-1] == {
        "event": "close",
        "frames_written": len(expected),
        "frames_played": len(expected),
    }


def test_an_underrun_stops_the_device_and_the_next_write_restarts_it(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = ClockedFileSink(tmp_path / "u.wav", tmp_path / "u.jsonl", clock)

    async def scenario() -> None:
        await sink.start()
        await sink.write(tone(FRAME))
        clock.advance(0.5)  # the writer stalls for far longer than the buffer
        await sink.write(tone(FRAME))
        await sink.close()

    start = clock.monotonic()
    run(clock.run(scenario()))
    segments = [line for line in read_timing(tmp_path / "u.jsonl") if line["event"] == "segment"]
    assert [s["start_monotonic"] - start for s in segments] == pytest.approx([0.0, 0.5])
    assert [s["sample_offset"] for s in segments] == [0, FRAME]
    # The stall is not recorded as hours of silence: the WAV holds just the two frames.
    assert len(read_wav(tmp_path / "u.wav")) == 2 * FRAME


def test_a_crash_leaves_a_readable_prefix(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = ClockedFileSink(tmp_path / "c.wav", tmp_path / "c.jsonl", clock)
    audio = tone(round(2.5 * SAMPLE_RATE))

    async def scenario() -> None:
        await sink.start()
        await sink.write(audio)  # ... and the process dies without close()

    run(clock.run(scenario()))
    recorded = read_wav(tmp_path / "c.wav")
    assert len(recorded) >= 2 * SAMPLE_RATE - FRAME
    np.testing.assert_array_equal(recorded, audio[: len(recorded)])
    assert len(decode_to_pcm(tmp_path / "c.wav")) >= len(recorded)
    assert read_timing(tmp_path / "c.jsonl")[0]["event"] == "segment"


def test_system_clock_start_is_within_a_millisecond(tmp_path: Path) -> None:
    clock = SystemClock()
    sink = ClockedFileSink(tmp_path / "s.wav", tmp_path / "s.jsonl", clock)

    async def scenario() -> list[float]:
        await sink.start()
        errors = []
        for lead in (0.3, 0.004):  # stopped device (it sleeps first), then running device
            placed = await sink.play_at(tone(FRAME), sink.next_sample_monotonic() + lead)
            errors.append(placed.error_s)
        await asyncio.sleep(0.2)  # the device has run dry and stopped
        placed = await sink.play_at(tone(FRAME), clock.monotonic() + 0.01)
        errors.append(placed.error_s)
        await sink.close()
        return errors

    errors = run(scenario())
    assert all(abs(e) <= 0.001 for e in errors), errors


def test_raw_fifo_output_is_paced_like_a_sound_card(tmp_path: Path) -> None:
    fifo = tmp_path / "device.pcm"
    os.mkfifo(fifo)
    arrivals: list[tuple[float, int]] = []  # (monotonic arrival, total bytes so far)
    received = bytearray()

    def reader() -> None:
        with open(fifo, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                received.extend(chunk)
                arrivals.append((time.monotonic(), len(received)))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    clock = SystemClock()
    sink = ClockedFileSink(tmp_path / "f.wav", tmp_path / "f.jsonl", clock, raw_pcm_path=fifo)
    marker_at_s = 0.4

    async def scenario() -> float:
        await sink.start()
        await asyncio.sleep(0.05)  # let the reader thread open the FIFO
        begin = clock.monotonic() + 0.1
        await sink.play_at(silence(round(marker_at_s * SAMPLE_RATE)), begin)
        placed = await sink.play_at(tone(4800, amplitude=20000), begin + marker_at_s)
        await sink.close()
        return placed.start_monotonic

    marker_start = run(scenario())
    thread.join(timeout=5)
    samples = np.frombuffer(bytes(received), dtype="<i2")
    first_loud = int(np.flatnonzero(np.abs(samples) > 1000)[0])
    # When did the byte holding the marker's first sample reach the reader?
    arrival = next(t for t, total in arrivals if total > 2 * first_loud)
    assert sink.raw_dropped_bytes == 0
    assert len(samples) == sink.frames_played
    # Handed on block by block as it plays (20 ms by default): generous bound for CI.
    assert -0.002 <= arrival - marker_start <= 0.05


def test_raw_fifo_without_a_reader_never_blocks(tmp_path: Path) -> None:
    fifo = tmp_path / "nobody.pcm"
    os.mkfifo(fifo)
    clock = FakeClock()
    sink = ClockedFileSink(tmp_path / "n.wav", tmp_path / "n.jsonl", clock, raw_pcm_path=fifo)

    async def scenario() -> None:
        await sink.start()
        await sink.write(tone(SAMPLE_RATE))
        await sink.close()

    run(clock.run(scenario()))
    assert sink.raw_dropped_bytes == 2 * SAMPLE_RATE
    assert len(read_wav(tmp_path / "n.wav")) == SAMPLE_RATE


def test_raw_output_to_a_plain_file_matches_the_wav(tmp_path: Path) -> None:
    clock = FakeClock()
    raw = tmp_path / "r.pcm"
    sink = ClockedFileSink(tmp_path / "r.wav", tmp_path / "r.jsonl", clock, raw_pcm_path=raw)
    audio = tone(12345)

    async def scenario() -> None:
        await sink.start()
        await sink.write(audio)
        await sink.close()

    run(clock.run(scenario()))
    np.testing.assert_array_equal(np.frombuffer(raw.read_bytes(), dtype="<i2"), audio)
    np.testing.assert_array_equal(read_wav(tmp_path / "r.wav"), audio)
