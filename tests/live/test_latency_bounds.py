"""Issue 12's causes, one by one: start alignment, jumps not slides, stale audio dropped."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from typing import BinaryIO

import numpy as np
import pytest

from audio.jitter import JitterBuffer
from audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm, from_bytes, silence, to_bytes
from server.live.buffer import PcmQueue
from server.live.client import FRAME_BYTES, LIVE_KEEP_S, Pacer, PipeSource, pump

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
CAPTURE_0 = 10_000.0
DELAY = 0.2


def _decode(payload: bytes | None) -> Pcm:
    return silence(FRAME_SAMPLES) if payload is None else from_bytes(payload)


def _ramp_buffer(frames: int = 200) -> JitterBuffer:
    """A buffer holding frames whose samples count up (sample value = stream position % 30000)."""
    buffer = JitterBuffer(decode=_decode, playout_delay_s=DELAY)
    for n in range(frames):
        values = (np.arange(n * FRAME_SAMPLES, (n + 1) * FRAME_SAMPLES) % 30000).astype(np.int16)
        buffer.push(n, CAPTURE_0 + n * FRAME_S, to_bytes(values), now=CAPTURE_0)
    return buffer


@pytest.mark.parametrize("late_ms", [0.7, 5.0, 35.0])
def test_a_receiver_starting_late_enters_the_stream_exactly_at_its_instant(late_ms: float) -> None:
    # A device that is ready late (young clock estimate, slow join) must not slide into
    # place at 2 ms/s: its first sample is the one due at that instant.
    buffer = _ramp_buffer()
    now = CAPTURE_0 + DELAY + late_ms / 1000
    chunk = buffer.pull(now=now)
    due = round(late_ms / 1000 * SAMPLE_RATE)
    assert int(chunk[0]) == due
    assert buffer.error_s is not None and abs(buffer.error_s) <= 0.5 / SAMPLE_RATE


def test_an_offset_of_a_few_ms_is_jumped_at_once_and_drift_still_slides() -> None:
    buffer = _ramp_buffer()
    now = CAPTURE_0 + DELAY
    for _ in range(10):
        now += len(buffer.pull(now=now)) / SAMPLE_RATE
    # The clock estimate improves by 8 ms: the next chunk already plays the right samples.
    now += 0.008
    chunk = buffer.pull(now=now)
    assert abs(int(chunk[0]) - round((now - CAPTURE_0 - DELAY) * SAMPLE_RATE)) <= 1
    assert buffer.error_s is not None and abs(buffer.error_s) < 0.001
    # 0.5 ms is drift: corrected a sample at a time, not jumped.
    now += len(chunk) / SAMPLE_RATE + 0.0005
    before = buffer.stats.resyncs
    buffer.pull(now=now)
    assert buffer.stats.resyncs == before and buffer.stats.dropped_samples > 0


def test_a_step_in_the_senders_stamps_is_taken_at_once() -> None:
    # The sender re-measured its audio's age (it started flowing, a backlog was dropped):
    # every stamp from frame 40 on is 30 ms later. Devices take that in one step, alike,
    # rather than smoothing it in over seconds (it is not stamping jitter).
    buffer = JitterBuffer(decode=_decode, playout_delay_s=DELAY)
    ramp = (np.arange(FRAME_SAMPLES) + 1).astype(np.int16)
    for n in range(40):
        buffer.push(n, CAPTURE_0 + n * FRAME_S, to_bytes(ramp), now=0)
    now = CAPTURE_0 + DELAY
    for _ in range(5):
        now += len(buffer.pull(now=now)) / SAMPLE_RATE
    assert buffer.error_s == pytest.approx(0.0, abs=0.0002)
    for n in range(40, 60):
        buffer.push(n, CAPTURE_0 + n * FRAME_S + 0.03, to_bytes(ramp), now=0)
    chunk = buffer.pull(now=now)
    assert buffer.error_s == pytest.approx(-0.03, abs=0.0005)
    assert not chunk.any()  # silence: the stream waits 30 ms, in one go


def _pcm(ms: int) -> Pcm:
    return np.ones(ms * SAMPLE_RATE // 1000, dtype=np.int16)


def test_a_live_queue_drops_a_stale_backlog_and_tells_its_age() -> None:
    t = [100.0]
    queue = PcmQueue(prefill_s=0.04, live=True, probe_s=0.0, clock=lambda: t[0])
    queue.put(_pcm(40))
    assert queue.age_s(100.0) == pytest.approx(0.04)
    assert queue.take(FRAME_SAMPLES) is not None and queue.flow_starts == 1
    # A hiccup: 3 s arrive at once. The backlog is dropped down to the prefill, counted.
    t[0] = 100.1
    queue.put(_pcm(3000))
    assert queue.take(FRAME_SAMPLES) is not None
    assert queue.stale_drops == 1
    assert queue.size == round(0.04 * SAMPLE_RATE) - FRAME_SAMPLES
    dropped = queue.stale_samples + queue.overflow_samples  # beyond 2 s it never even queued
    assert dropped == 3020 * SAMPLE_RATE // 1000 - round(0.04 * SAMPLE_RATE)


def test_a_file_queue_never_drops_what_is_queued() -> None:
    queue = PcmQueue()
    queue.put(_pcm(900))
    assert queue.take(FRAME_SAMPLES) is not None
    assert queue.size == 900 * SAMPLE_RATE // 1000 - FRAME_SAMPLES and queue.stale_drops == 0


class _Ws:
    def __init__(self) -> None:
        self.sent = 0
        self.texts: list[str] = []

    async def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            self.texts.append(data)
        else:
            self.sent += 1


class _SlowReads(io.RawIOBase):
    """A pipe read by a busy machine: every read takes `delay_s` longer."""

    def __init__(self, stream: BinaryIO, delay_s: float) -> None:
        self._stream, self._delay_s = stream, delay_s

    def read(self, size: int = -1) -> bytes:
        time.sleep(self._delay_s)
        return self._stream.read(size)


def _pipe_run(plan: list[tuple[float, int]], read_delay_s: float = 0.0) -> tuple[Pacer, _Ws, float]:
    """Feed a real pipe by `plan` ((pause before, 20 ms chunks written at once), ...) into pump."""
    read_fd, write_fd = os.pipe()

    def writer() -> None:
        with os.fdopen(write_fd, "wb") as out:
            for pause, chunks in plan:
                time.sleep(pause)
                out.write(bytes(FRAME_BYTES * chunks))
                out.flush()

    async def scenario() -> tuple[Pacer, _Ws, float]:
        with os.fdopen(read_fd, "rb") as stream:
            slow = _SlowReads(stream, read_delay_s) if read_delay_s else stream
            source = PipeSource(stream=slow, rate=SAMPLE_RATE)  # type: ignore[arg-type]
            pacer, ws = Pacer(may_drop=True), _Ws()
            start = time.monotonic()
            threading.Thread(target=writer, daemon=True).start()
            await pump(ws=ws, source=source, pacer=pacer, stop=asyncio.Event())  # type: ignore[arg-type]
            return pacer, ws, time.monotonic() - start

    return asyncio.run(scenario())


def test_a_live_pipe_drops_its_backlog_after_a_hiccup_a_fast_one_is_paced() -> None:
    # Live: 1.2 s in real time, a 1 s hiccup, then its 1 s backlog at once, then real time.
    live = [(FRAME_S, 1)] * 60 + [(1.0, 50)] + [(FRAME_S, 1)] * 10
    pacer, ws, _ = _pipe_run(live)
    assert pacer.live is True
    # Most of the backlog goes (the newest LIVE_KEEP_S, and what was read as it arrived, stays).
    assert 1.0 - 3 * LIVE_KEEP_S <= pacer.dropped_s <= 1.0 - LIVE_KEEP_S + 0.02
    # A producer faster than real time (a file piped in): nothing dropped, paced instead.
    pacer, ws, took = _pipe_run([(0.0, 75)])
    assert pacer.live is False and pacer.dropped_s == 0 and ws.sent == 75
    assert ws.texts == ['{"type": "paced"}']  # so the server drops none of it either
    assert took > 1.5 - 0.2 - 0.1  # 1.5 s of audio, at most AHEAD_S ahead


def test_a_backlog_read_slower_than_it_is_sent_is_still_dropped() -> None:
    # A busy machine: the reader thread hands the backlog over more slowly than the loop
    # sends it, so the queue between them is often empty mid-backlog. That is not the
    # backlog's end: the newest LIVE_KEEP_S still goes, the rest is still dropped.
    live = [(FRAME_S, 1)] * 60 + [(1.0, 50)] + [(FRAME_S, 1)] * 10
    pacer, _, _ = _pipe_run(live, read_delay_s=0.002)
    assert pacer.live is True
    assert 1.0 - 2 * LIVE_KEEP_S <= pacer.dropped_s <= 1.0 - LIVE_KEEP_S + 0.02
