"""The device side alone: refusals, bad frames, expiry, idle end, priorities (real Opus, sinks)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from audio.clock import SystemClock
from audio.opus import OpusEncoder
from audio.pcm import FRAME_SAMPLES
from audio.sinks import NullSink
from edge_agent.live import Grant, LiveReceiver, live_event
from loa_testkit.harness import eventually, run
from protocol import Ack, LiveJoin, LiveLeave, LivePriority, live_topic
from protocol.liveframe import LiveFrame, encode_frame


class Subscriptions:
    """Records what the receiver subscribes to (the MQTT seam)."""

    def __init__(self) -> None:
        self.topics: list[str] = []

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        self.topics.append(topic_filter)

    def unsubscribe(self, topic_filter: str) -> None:
        self.topics.remove(topic_filter)


class Busy:
    """A player that refuses everything below emergency."""

    async def request_live(self, *, session_id: str, priority: LivePriority) -> Grant:
        return Grant(priority == "emergency", "an emergency programme is playing")

    async def quiet(self) -> None:
        pass

    async def release(self, *, session_id: str) -> None:
        pass


def _receiver(acks: list[Ack], **kw: object) -> tuple[LiveReceiver, Subscriptions]:
    clock = SystemClock(spin_s=0)
    truth = clock.time() - clock.monotonic()
    subs = Subscriptions()

    async def send(ack: Ack) -> None:
        acks.append(ack)

    rx = LiveReceiver(
        link=subs, clock=clock, server_now=lambda m: m + truth,
        open_sink=lambda: NullSink(clock), send_ack=send, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return rx, subs


def _join(sid: str, priority: LivePriority = "normal", expires: float | None = None) -> LiveJoin:
    return LiveJoin(
        id=f"j-{sid}-{priority}", session_id=sid, topic=live_topic(5, sid), priority=priority,
        playout_delay_ms=200, expires_at=expires if expires is not None else time.time() + 10,
    )  # fmt: skip


def test_bad_frames_and_far_future_sequence_are_counted_not_played() -> None:
    acks: list[Ack] = []

    async def scenario() -> LiveReceiver:
        rx, subs = _receiver(acks, idle_timeout_s=0.6)
        await rx.handle(_join("s1"))
        assert acks[-1].ok and subs.topics == [live_topic(5, "s1")]
        enc = OpusEncoder()
        tone = (np.sin(np.arange(FRAME_SAMPLES) / 5) * 8000).astype(np.int16)
        now = time.time()
        for seq in range(10):
            frame = LiveFrame(seq, round((now + seq * 0.02) * 1e6), enc.encode(tone))
            assert rx.on_message(live_topic(5, "s1"), encode_frame(frame))
        rx.on_message(live_topic(5, "s1"), b"LOAL garbage")
        far = LiveFrame(10**6, round(now * 1e6), enc.encode(tone))
        rx.on_message(live_topic(5, "s1"), encode_frame(far))
        rx.on_message(live_topic(6, "other"), encode_frame(far))  # never joined
        assert not rx.on_message("loa/v1/zone/5/clip/x", b"")  # not ours
        await eventually(lambda: bool(rx.proofs), timeout=5, what="the idle end")
        return rx

    rx = run(scenario())
    assert rx.rejected == {"bad_frame": 1, "future_frame": 1, "not_joined": 1}
    proof = rx.proofs[0]
    assert proof.played == 10 and proof.reason == "no audio received for 0.6 s"
    assert proof.first_frame_at is not None and proof.outcome == "played"


def test_joined_frames_hand_their_send_times_to_the_clock() -> None:
    acks: list[Ack] = []
    seen: list[tuple[float, float]] = []

    async def scenario() -> None:
        rx, _subs = _receiver(acks, idle_timeout_s=0.3, on_sent=lambda s, at: seen.append((s, at)))
        await rx.handle(_join("s2"))
        payload = OpusEncoder().encode(np.zeros(FRAME_SAMPLES, dtype=np.int16))
        now = time.time()
        before = time.monotonic()
        stamped = LiveFrame(0, round(now * 1e6), payload, sent_us=round((now + 0.01) * 1e6))
        assert rx.on_message(live_topic(5, "s2"), encode_frame(stamped))
        assert rx.on_message(live_topic(5, "s2"), encode_frame(LiveFrame(1, 0, payload)))
        assert rx.on_message(live_topic(6, "other"), encode_frame(stamped))  # not joined
        assert len(seen) == 1  # format 1 frames and other sessions' frames say nothing
        assert seen[0][0] == pytest.approx(now + 0.01, abs=1e-6)
        assert before <= seen[0][1] <= time.monotonic()
        await eventually(lambda: bool(rx.proofs), timeout=5, what="the idle end")

    run(scenario())


def test_a_join_is_acknowledged_once_it_can_decode_and_what_came_meanwhile_plays() -> None:
    """The codec loads with the first session (a second or more on a Pi): the server must not
    count the device as listening before then, and frames sent meanwhile are not lost."""
    acks: list[Ack] = []
    loaded = asyncio.Event()

    async def scenario() -> LiveReceiver:
        rx, _subs = _receiver(acks, idle_timeout_s=0.3, decoder_ready=loaded.wait)
        joining = asyncio.create_task(rx.handle(_join("s4")))
        await asyncio.sleep(0.05)
        assert acks == []  # not listening yet
        enc = OpusEncoder()
        tone = (np.sin(np.arange(FRAME_SAMPLES) / 5) * 8000).astype(np.int16)
        now = time.time()
        for seq in range(5):  # captured now, due 200 ms later: after the codec is ready
            capture = round((now + seq * 0.02) * 1e6)
            frame = LiveFrame(seq, capture, enc.encode(tone), last=seq == 4)
            assert rx.on_message(live_topic(5, "s4"), encode_frame(frame))
        await asyncio.sleep(0.05)
        assert acks == []
        loaded.set()
        await joining
        assert [(a.ok, a.detail) for a in acks] == [(True, f"joined {live_topic(5, 's4')}")]
        await eventually(lambda: bool(rx.proofs), timeout=5, what="the last frame")
        return rx

    proof = run(scenario()).proofs[0]
    assert (proof.played, proof.dropped) == (5, 0)  # none skipped as too late
    assert proof.reason == "the session ended"
    assert proof.output_gaps == 0  # the first write starts the output: not a gap


def test_an_output_that_ran_dry_mid_session_is_counted_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A device too busy to write in time (here: its loop held for 300 ms) leaves a gap in
    the sound; the proof of play and the log say so, for the technician."""
    acks: list[Ack] = []

    async def scenario() -> LiveReceiver:
        rx, _subs = _receiver(acks, idle_timeout_s=2.0)
        await rx.handle(_join("s6"))
        enc = OpusEncoder()
        tone = (np.sin(np.arange(FRAME_SAMPLES) / 5) * 8000).astype(np.int16)
        now = time.time()
        for seq in range(40):  # 0.8 s of audio, due from 200 ms on
            capture = round((now + seq * 0.02) * 1e6)
            frame = LiveFrame(seq, capture, enc.encode(tone), last=seq == 39)
            assert rx.on_message(live_topic(5, "s6"), encode_frame(frame))
        await asyncio.sleep(0.4)  # playing by now
        time.sleep(0.3)  # noqa: ASYNC251 -- on purpose: the loop is held, the output runs dry
        await eventually(lambda: bool(rx.proofs), timeout=5, what="the last frame")
        return rx

    proof = run(scenario()).proofs[0]
    assert proof.output_gaps == 1
    assert "output gaps 1" in live_event(proof)["reason"]
    assert "ran dry 1 times" in caplog.text


def test_a_session_left_before_it_could_decode_says_so_to_its_join() -> None:
    acks: list[Ack] = []
    loaded = asyncio.Event()

    async def scenario() -> None:
        rx, _subs = _receiver(acks, decoder_ready=loaded.wait)
        joining = asyncio.create_task(rx.handle(_join("s5")))
        await asyncio.sleep(0.05)
        leaving = asyncio.create_task(
            rx.handle(
                LiveLeave(
                    id="l-s5",
                    session_id="s5",
                    reason="operator stopped",
                    expires_at=time.time() + 10,
                )
            )
        )
        await asyncio.sleep(0.05)
        loaded.set()
        await asyncio.gather(joining, leaving)

    run(scenario())
    said = {a.id: (a.ok, a.detail) for a in acks}
    assert said == {
        "j-s5-normal": (False, "left before the audio started: operator stopped"),
        "l-s5": (True, "left"),
    }


def test_expired_refused_and_leave() -> None:
    acks: list[Ack] = []

    async def scenario() -> LiveReceiver:
        rx, _ = _receiver(acks, arbiter=Busy())
        await rx.handle(_join("old", expires=time.time() - 3))
        await rx.handle(_join("n1"))
        await rx.handle(_join("e1", "emergency"))
        await rx.handle(_join("e1", "emergency"))  # a QoS 1 duplicate: answered once
        await rx.handle(_join("p1", "priority"))
        await rx.handle(LiveLeave(id="l1", session_id="e1", expires_at=time.time() + 5))
        await eventually(lambda: bool(rx.proofs), timeout=5)
        return rx

    rx = run(scenario())
    details = [(a.id, a.ok, a.detail) for a in acks]
    assert details[0][1] is False and "expired" in details[0][2]
    assert details[1] == (
        "j-n1-normal",
        False,
        "refused by the player: an emergency programme is playing",
    )
    assert details[2][:2] == ("j-e1-emergency", True)
    assert details[3][1] is False and "e1 (emergency) is playing" in details[3][2]
    assert details[4] == ("l1", True, "left")
    assert len(acks) == 5 and rx.current is None and rx.proofs[0].outcome == "missed"
