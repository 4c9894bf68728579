"""Frames leave in groups (LOA_LIVE_SEND_MS): the same stamps and audio, fewer wake-ups."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from audio.clock import FakeClock
from audio.pcm import SAMPLE_RATE, Pcm
from protocol.liveframe import LiveFrame, decode_frame
from protocol.mqtt_client import Outgoing
from server.live.buffer import PcmQueue
from server.live.publisher import FramePublisher


class _TimedOutlet:
    """Records each publish with the virtual time it happened at."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, Outgoing]] = []

    def publish(self, msg: Outgoing) -> int:
        self.sent.append((self.clock.monotonic(), msg))
        return 0


def _voice(i: int) -> Pcm:
    """20 ms of a different tone per message, so frames differ."""
    t = np.arange(SAMPLE_RATE // 50) / SAMPLE_RATE
    return (8000 * np.sin(2 * np.pi * (200 + 10 * i) * t)).astype(np.int16)


def _run(
    group: int, *, messages: int = 50, stop_at_s: float | None = None
) -> tuple[list[tuple[float, LiveFrame]], FramePublisher, float]:
    """A microphone of 20 ms messages from 0.1 s on; (publish time, frame) of each frame."""
    clock = FakeClock()
    queue = PcmQueue(prefill_s=0.1, live=True, chunk_margin_s=0.02, clock=clock.monotonic)
    outlet = _TimedOutlet(clock)
    pub = FramePublisher(
        outlet=outlet, queue=queue, clock=clock, server_time=clock.time, topics=lambda: ["z"],
        first_audio_wait_s=2.0, frames_per_send=group,
    )  # fmt: skip
    t0 = clock.monotonic()

    async def source() -> None:
        for i in range(messages):
            await clock.sleep_until(t0 + 0.1 + i * 0.02)
            queue.put(_voice(i))
        queue.finish()

    async def stopper() -> None:
        if stop_at_s is not None:
            await clock.sleep_until(t0 + stop_at_s)
            pub.stop()

    async def scenario() -> None:
        await asyncio.gather(pub.run(), source(), stopper())

    asyncio.run(clock.run(scenario()))
    return [(at, decode_frame(m.payload)) for at, m in outlet.sent], pub, t0


def test_pairs_carry_the_same_frames_and_stamps_as_single_frames() -> None:
    single, _, _ = _run(1)
    paired, _, _ = _run(2)
    assert [f.seq for _, f in paired] == [f.seq for _, f in single]
    assert [f.capture_us for _, f in paired] == [f.capture_us for _, f in single]
    assert [f.payload for _, f in paired] == [f.payload for _, f in single]
    assert [f.last for _, f in paired] == [f.last for _, f in single]


def test_pairs_leave_together_when_the_second_frame_is_due() -> None:
    single, _, _ = _run(1)
    paired, _, _ = _run(2)
    due = {f.seq: at for at, f in single}
    for at, frame in paired[:-1]:
        # Frame 2k waits for 2k+1: both go when 2k+1 would have gone alone.
        assert at == pytest.approx(due[frame.seq | 1], abs=1e-9)
    times = [at for at, _ in paired[:-1]]
    assert len(set(times)) == len(times) // 2  # two frames per send, every send
    # Each frame's send time is read as it leaves (wall = monotonic + one offset on the fake
    # clock), not when it was taken: a true lower bound on the devices' clock offset.
    offsets = {round((frame.sent_us or 0) / 1e6 - at, 6) for at, frame in paired}
    assert len(offsets) == 1


def test_a_stop_sends_the_group_in_hand_with_the_last_flag() -> None:
    frames, pub, _ = _run(2, messages=200, stop_at_s=0.5)
    assert frames[-1][1].last
    assert sum(f.last for _, f in frames) == 1
    assert pub.frames_sent == len(frames)
    seqs = [f.seq for _, f in frames]
    assert seqs == list(range(len(seqs)))  # nothing skipped, nothing sent twice


def test_a_group_of_none_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FramePublisher(
            outlet=_TimedOutlet(FakeClock()), queue=PcmQueue(), clock=FakeClock(),
            topics=lambda: ["z"], frames_per_send=0,
        )  # fmt: skip


def test_a_group_whose_last_frame_is_gated_still_ends_at_its_slot() -> None:
    """Frame 2k+1 held back by a relay's gate: 2k still leaves at 2k+1's slot, not later."""
    clock = FakeClock()
    queue = PcmQueue(max_s=2.0)
    for i in range(25):  # 0.5 s of audio, a file's pace
        queue.put(_voice(i))
    queue.finish()
    outlet = _TimedOutlet(clock)
    pub = FramePublisher(
        outlet=outlet, queue=queue, clock=clock, server_time=clock.time, topics=lambda: ["z"],
        gate=lambda _stamp, _pcm: next(turns) % 2 == 0, frames_per_send=2,
    )  # fmt: skip
    turns = iter(range(10_000))
    t0 = clock.monotonic()
    asyncio.run(clock.run(pub.run()))
    sent = [(at - t0, decode_frame(m.payload)) for at, m in outlet.sent]
    assert [f.seq for _, f in sent][:5] == [0, 2, 4, 6, 8]
    for at, frame in sent[:-1]:
        assert at == pytest.approx((frame.seq + 1) * 0.02, abs=1e-9)
