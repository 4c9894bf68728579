"""A live queue's prefill is as small as its sender's messages allow: it is part of the latency."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from audio.clock import FakeClock
from audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm
from protocol.liveframe import LiveFrame, decode_frame
from server.live.buffer import PcmQueue
from server.live.publisher import OPUS_LOOKAHEAD_S, FramePublisher
from tests.live.test_publisher_stale import _Outlet

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE


def _ms(ms: int) -> Pcm:
    return np.ones(ms * SAMPLE_RATE // 1000, dtype=np.int16)


def _queue(clock: FakeClock, *, max_ms: float = 200 / 3) -> PcmQueue:
    return PcmQueue(
        prefill_s=max_ms / 1000,
        live=True,
        chunk_margin_s=FRAME_S,  # the service's margin: one frame
        clock=clock.monotonic,
    )


def _first_flow(queue: PcmQueue, message_ms: int, clock: FakeClock) -> int:
    """Messages of `message_ms` every `message_ms`, a take every 20 ms: ms until audio flows."""
    for t_ms in range(0, 1000, 10):
        if t_ms % message_ms == 0:
            queue.put(_ms(message_ms))
        if t_ms % 20 == 0 and queue.take(FRAME_SAMPLES) is not None:
            return t_ms
        clock.advance(0.01)
    raise AssertionError("never flowed")


def _publish_messages(
    pub: FramePublisher,
    queue: PcmQueue,
    clock: FakeClock,
    outlet: _Outlet,
    *,
    start_s: float,
    messages: int,
) -> list[LiveFrame]:
    """A sender of 20 ms messages starting `start_s` into the session; the frames published."""

    async def source() -> None:
        start = clock.monotonic() + start_s
        for i in range(messages):
            await clock.sleep_until(start + i * 0.02)
            queue.put(_ms(20))
        queue.finish()

    async def scenario() -> None:
        await asyncio.gather(pub.run(), source())

    asyncio.run(clock.run(scenario()))
    return [decode_frame(m.payload) for m in outlet.sent]


@pytest.mark.parametrize(
    ("message_ms", "prefill_ms", "flows_at_ms"),
    [(20, 40, 20), (40, 60, 40), (100, 200 / 3, 0)],
)
def test_the_prefill_is_the_largest_message_plus_a_margin_within_its_cap(
    message_ms: int, prefill_ms: float, flows_at_ms: int
) -> None:
    clock = FakeClock()
    queue = _queue(clock)
    assert _first_flow(queue, message_ms, clock) == flows_at_ms
    assert queue.prefill == round(prefill_ms / 1000 * SAMPLE_RATE)
    # Audio flows when a message fills the prefill: at most one message more is in hand.
    assert queue.lead_s is not None and queue.lead_s <= (prefill_ms + message_ms) / 1000
    assert queue.underruns == 0


def test_the_prefill_is_fixed_once_audio_flowed() -> None:
    clock = FakeClock()
    queue = _queue(clock)
    _first_flow(queue, 20, clock)
    queue.put(_ms(60))  # a later burst does not make the start's latency grow
    assert queue.prefill == round(0.04 * SAMPLE_RATE)


def test_without_a_margin_the_prefill_is_what_was_asked() -> None:
    queue = PcmQueue(prefill_s=0.1, live=True)
    queue.put(_ms(20))
    assert queue.prefill == round(0.1 * SAMPLE_RATE)


def test_frames_before_the_audio_are_stamped_with_the_prefill_the_sender_needs() -> None:
    """Silence before the first message, then 20 ms messages: one small step, at the start."""
    clock = FakeClock()
    queue = _queue(clock)
    outlet = _Outlet()
    pub = FramePublisher(
        outlet=outlet, queue=queue, clock=clock, server_time=clock.time, topics=lambda: ["z"]
    )
    t0_wall = clock.time()
    frames = _publish_messages(pub, queue, clock, outlet, start_s=0.205, messages=40)

    def lead_of(seq: int) -> float:
        f = frames[seq]
        return t0_wall + f.seq * FRAME_S - OPUS_LOOKAHEAD_S - f.capture_us / 1e6

    assert lead_of(0) == pytest.approx(0.2 / 3, abs=1e-6)  # nothing heard yet: the cap
    assert lead_of(11) == pytest.approx(0.04, abs=1e-6)  # one 20 ms message: 40 ms
    lead = queue.lead_s
    # The first take (at 240 ms) found 40 ms queued, the newest 15 ms old.
    assert lead is not None and lead == pytest.approx(0.04 + 0.015, abs=1e-6)
    assert lead_of(len(frames) - 2) == pytest.approx(lead, abs=1e-6)
    assert queue.underruns == 0


@pytest.mark.parametrize("frame_ms", [20, 40])
def test_a_microphones_frames_start_with_its_audio_as_old_as_the_prefill(frame_ms: int) -> None:
    """The timeline waits for the first audio: no frame before it, one lead for all of them.

    A timeline already ticking took the first audio at its next tick, up to a frame after it
    was in hand: the lead then came out anywhere between the prefill and a frame more.
    """
    clock = FakeClock()
    frame_samples = SAMPLE_RATE * frame_ms // 1000
    queue = PcmQueue(
        prefill_s=0.1, live=True, chunk_margin_s=frame_ms / 1000, clock=clock.monotonic
    )
    outlet = _Outlet()
    pub = FramePublisher(
        outlet=outlet, queue=queue, clock=clock, server_time=clock.time, topics=lambda: ["z"],
        frame_samples=frame_samples, first_audio_wait_s=2.0,
    )  # fmt: skip
    t0_wall = clock.time()
    frames = _publish_messages(pub, queue, clock, outlet, start_s=0.213, messages=60)
    prefill_s = 0.02 + frame_ms / 1000  # one 20 ms message and one frame
    first_sent = frames[0].sent_us
    assert first_sent is not None
    # The first frame left as the message that filled the prefill arrived, and carried it.
    assert first_sent / 1e6 - t0_wall == pytest.approx(0.213 + prefill_s - 0.02, abs=1e-6)
    # No silence before the audio; only the closing frame, after the source ended, is empty.
    assert pub.silent_frames == 1 and frames[-1].last and queue.underruns == 0
    leads = {
        round((f.sent_us or 0) / 1e6 - OPUS_LOOKAHEAD_S - f.capture_us / 1e6, 6)
        for f in frames[:-1]
    }
    assert leads == {round(prefill_s, 6)}


def test_a_microphone_that_stays_silent_gets_silence_frames_after_the_wait() -> None:
    clock = FakeClock()
    queue = _queue(clock)
    outlet = _Outlet()
    pub = FramePublisher(
        outlet=outlet, queue=queue, clock=clock, server_time=clock.time, topics=lambda: ["z"],
        first_audio_wait_s=0.5,
    )  # fmt: skip
    t0_wall = clock.time()

    async def scenario() -> None:
        async def stop_later() -> None:
            await clock.sleep_until(clock.monotonic() + 1.0)
            pub.stop()

        await asyncio.gather(pub.run(), stop_later())

    asyncio.run(clock.run(scenario()))
    frames = [decode_frame(m.payload) for m in outlet.sent]
    assert frames[0].sent_us is not None
    assert frames[0].sent_us / 1e6 - t0_wall == pytest.approx(0.5, abs=1e-6)
    assert pub.silent_frames == len(frames) == 26  # 0.5 s of 20 ms frames, then the last
