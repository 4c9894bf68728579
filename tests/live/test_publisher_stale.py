"""The sending side keeps live audio as old as its stamps say: stale backlog dropped, counted."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from audio.clock import FakeClock
from audio.opus import OpusDecoder
from audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm
from protocol.liveframe import decode_frame
from protocol.mqtt_client import Outgoing
from server.live.buffer import PcmQueue
from server.live.publisher import OPUS_LOOKAHEAD_S, FramePublisher

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE


def _ms(ms: int, value: int = 1) -> Pcm:
    return np.full(ms * SAMPLE_RATE // 1000, value, dtype=np.int16)


class _Clock:
    """A settable monotonic clock for the queue."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _live_queue(clock: _Clock, *, prefill_ms: int = 40, probe_s: float = 0.0) -> PcmQueue:
    return PcmQueue(prefill_s=prefill_ms / 1000, live=True, probe_s=probe_s, clock=clock)


def test_the_lead_is_the_age_of_the_first_audio_taken_less_the_takers_lateness() -> None:
    clock = _Clock()
    queue = _live_queue(clock)
    queue.put(_ms(60))
    clock.t += 0.005  # the newest sample arrived 5 ms ago; the taker is 3 ms late
    assert queue.take(FRAME_SAMPLES, late_s=0.003) is not None
    assert queue.lead_s == pytest.approx(0.060 + 0.005 - 0.003)


def test_steady_input_is_never_dropped_even_in_100_ms_messages() -> None:
    clock = _Clock()
    queue = _live_queue(clock, prefill_ms=120)
    queue.put(_ms(100))
    for i in range(200):  # 4 s: a browser's 100 ms message every fifth frame
        if i % 5 == 0:
            queue.put(_ms(100))
        assert queue.take(FRAME_SAMPLES) is not None
        clock.t += FRAME_S
    assert queue.stale_drops == 0 and queue.underruns == 0


def test_a_backlog_is_dropped_down_to_the_lead_on_the_next_take_and_counted() -> None:
    clock = _Clock()
    queue = _live_queue(clock)
    queue.put(_ms(40))
    queue.take(FRAME_SAMPLES)
    lead = queue.lead_s
    assert lead is not None and lead == pytest.approx(0.04)
    # The source stalls 1 s (the queue runs dry, silence goes out), then hands over the
    # second it had buffered at once, oldest samples first (value 1), the newest last (2).
    for _ in range(50):
        clock.t += FRAME_S
        queue.take(FRAME_SAMPLES)
    queue.put(np.concatenate([_ms(960, 1), _ms(40, 2)]))
    clock.t += 0.001
    # It refills to the prefill first: the next take flows, the backlog beyond the lead goes.
    frame = queue.take(FRAME_SAMPLES)
    assert frame is not None
    assert queue.stale_drops == 1
    assert queue.stale_samples == pytest.approx((1.0 + 0.001 - lead) * SAMPLE_RATE, abs=1)
    # What is played is no older than the stamps say: the newest audio.
    assert queue.age_s(clock.t) == pytest.approx(lead - FRAME_S, abs=1 / SAMPLE_RATE)
    assert (frame == 2).sum() >= FRAME_SAMPLES - round(0.001 * SAMPLE_RATE) - 1


def test_a_late_taker_is_not_mistaken_for_old_audio() -> None:
    clock = _Clock()
    queue = _live_queue(clock)
    queue.put(_ms(40))
    queue.take(FRAME_SAMPLES)
    queue.put(_ms(20))
    clock.t += 0.05  # the taker woke 50 ms late: the audio is no older for it
    assert queue.take(FRAME_SAMPLES, late_s=0.05) is not None
    assert queue.stale_drops == 0


def test_no_drop_while_probing_nor_from_a_paced_or_file_source() -> None:
    clock = _Clock()
    probing = _live_queue(clock, probe_s=1.0)
    probing.put(_ms(40))
    probing.take(FRAME_SAMPLES)
    probing.put(_ms(500))  # a pipe fed faster than real time, before it says "paced"
    probing.take(FRAME_SAMPLES)
    assert probing.stale_drops == 0
    paced = _live_queue(clock)
    paced.put(_ms(40))
    paced.take(FRAME_SAMPLES)
    paced.live = False  # "paced": all of it is content
    paced.put(_ms(1000))
    paced.take(FRAME_SAMPLES)
    assert paced.stale_drops == 0 and paced.lead_s == pytest.approx(0.04)
    file_queue = PcmQueue(clock=clock)
    file_queue.put(_ms(1000))
    file_queue.take(FRAME_SAMPLES)
    assert file_queue.stale_drops == 0 and file_queue.lead_s is None


class _Outlet:
    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    def publish(self, msg: Outgoing) -> int:
        self.sent.append(msg)
        return 0


def test_publisher_keeps_one_timeline_and_sends_fresh_audio_after_a_stall() -> None:
    """Virtual time: a source stalls 1 s then hands over its backlog; latency comes back."""
    clock = FakeClock()
    queue = PcmQueue(prefill_s=0.04, live=True, probe_s=0.2, clock=clock.monotonic)
    outlet = _Outlet()
    zones = ["loa/v1/zone/1/live/s", "loa/v1/zone/2/live/s"]
    pub = FramePublisher(
        outlet=outlet, queue=queue, clock=clock, server_time=clock.time, topics=lambda: zones
    )
    t0_wall = clock.time()
    tone = (np.sin(np.arange(FRAME_SAMPLES) * 2 * np.pi / 48) * 8000).astype(np.int16)

    async def source() -> None:
        # 1 s in real time (20 ms every 20 ms, 10 ms ahead of the publisher's grid), then 1 s
        # of nothing, then that second at once (silence: stale), then tone in real time.
        start = clock.monotonic() + 0.01
        for i in range(50):
            await clock.sleep_until(start + i * FRAME_S)
            queue.put(np.zeros(FRAME_SAMPLES, np.int16))
        await clock.sleep_until(start + 100 * FRAME_S)
        queue.put(np.zeros(50 * FRAME_SAMPLES, np.int16))
        for i in range(100, 150):
            await clock.sleep_until(start + i * FRAME_S)
            queue.put(tone)
        queue.finish()

    async def scenario() -> None:
        await asyncio.gather(pub.run(), source())

    asyncio.run(clock.run(scenario()))
    frames = [decode_frame(m.payload) for m in outlet.sent[::2]]
    assert [m.topic for m in outlet.sent[:2]] == zones
    assert outlet.sent[0].payload == outlet.sent[1].payload  # one encode for every zone
    lead = queue.lead_s
    assert lead is not None and 0.0 <= lead <= 0.06
    # One timeline from the first audio on (the silence before it is stamped with the
    # prefill): every stamp is its place on it, no step after the stall.
    for f in frames[5:]:
        want = t0_wall + f.seq * FRAME_S - lead - OPUS_LOOKAHEAD_S
        assert f.capture_us == round(want * 1_000_000)
    # The stale second was dropped (counted) the first frame after it came, not played late.
    assert queue.stale_drops == 1
    assert queue.stale_samples >= round((1.0 - lead - FRAME_S) * SAMPLE_RATE)
    # So the tone spoken right after the stall is sent within a frame of its stamp's slot.
    decoder = OpusDecoder()
    loud = [f.seq for f in frames if np.abs(decoder.decode(f.payload)).max() > 2000]
    tone_start_seq = 100 + 0.01 / FRAME_S
    assert loud and loud[0] <= tone_start_seq + lead / FRAME_S + 2


def test_a_live_pipe_with_a_hiccup_in_its_first_second_is_still_live() -> None:
    """Under load the sender may stall in its probe: its burst must not make it "paced"."""
    from tests.live.test_latency_bounds import _pipe_run

    # 0.2 s in real time, 0.4 s of nothing then that backlog at once, then real time.
    plan = [(FRAME_S, 1)] * 10 + [(0.4, 20)] + [(FRAME_S, 1)] * 50
    pacer, ws, _ = _pipe_run(plan)
    assert pacer.live is True
    assert ws.texts == []  # never told the server it was paced: its backlogs are dropped


def test_after_running_dry_audio_flows_again_exactly_as_old_as_the_lead() -> None:
    clock = _Clock()
    queue = _live_queue(clock, prefill_ms=50)
    queue.put(_ms(60))
    queue.take(FRAME_SAMPLES)
    lead = queue.lead_s
    assert lead is not None and lead == pytest.approx(0.06)
    for _ in range(3):  # 40 ms left: two frames, then dry
        clock.t += FRAME_S
        queue.take(FRAME_SAMPLES)
    assert queue.underruns == 1
    # The source comes back in 20 ms messages; audio flows when it is as old as the lead
    # (not at the prefill), the excess of that moment dropped: the stamps are right again.
    played_at = None
    for i in range(10):
        queue.put(_ms(20))
        clock.t += 0.007  # the publisher's grid is 7 ms after the messages'
        if queue.take(FRAME_SAMPLES) is not None and played_at is None:
            played_at = i
            assert queue.age_s(clock.t) + FRAME_S == pytest.approx(lead, abs=1 / SAMPLE_RATE)
        clock.t += FRAME_S - 0.007
    assert played_at == 2  # 3 messages (60 ms) + 7 ms is the first age past 60 ms
    assert queue.stale_samples == round(0.007 * SAMPLE_RATE)


def test_the_source_status_counts_the_stale_audio_dropped() -> None:
    from server.live.sources import SourceStatus

    clock = _Clock()
    queue = _live_queue(clock)
    queue.put(_ms(40))
    queue.take(FRAME_SAMPLES)
    queue.put(_ms(500))
    queue.take(FRAME_SAMPLES)
    shown = SourceStatus().as_dict(queue)
    assert shown["stale_drops"] == 1
    assert shown["stale_dropped_s"] == pytest.approx(0.52 - 0.04, abs=0.001)  # age - lead
    assert "stale_drops" not in SourceStatus().as_dict()  # without a queue: as before


def test_a_live_senders_newest_chunk_is_never_dropped_as_backlog() -> None:
    from server.live.client import FRAME_BYTES, Pacer

    pacer = Pacer(may_drop=True)
    pacer.live = True
    for _ in range(25):  # half a second handed over at once, after a hiccup
        pacer.sent(FRAME_BYTES)
    # More reads waiting behind this one: it is backlog, dropped and counted.
    assert pacer.stale(FRAME_BYTES, more_ready=True)
    assert pacer.dropped_s == pytest.approx(FRAME_S)
    # The newest one read: fresh, sent (dropping it would leave the server's queue short).
    assert not pacer.stale(FRAME_BYTES, more_ready=False)
    paced = Pacer(may_drop=True)
    paced.live = False
    paced.sent(FRAME_BYTES * 25)
    assert not paced.stale(FRAME_BYTES, more_ready=True)  # a paced producer: all content
