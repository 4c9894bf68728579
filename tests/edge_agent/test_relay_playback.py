"""Relay items on the player: relayed frames in step, silence, fallback, the clip after, the tally.

Real parts as in test_player: real Opus frames from the live encoder (audio.opus), real Opus
clips decoded by PyAV, a real file sink on virtual time. Frames reach the device's
RelayFrames at their capture time + 50 ms, as a link would bring them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from audio.decode import decode_to_pcm
from audio.opus import OpusDecoder, OpusEncoder
from audio.pcm import FRAME_SAMPLES, split_frames
from audio.signals import find_markers, make_marker, marker_track
from edge_agent.playback import READ_BLOCK
from edge_agent.relay import ItemReader, RelayFrames, relay_windows
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import eventually, make_agent, new_device_id, running
from loa_testkit.harness import run as run_agent
from loa_testkit.playfix import (
    FAST,
    Clip,
    at,
    document,
    heard,
    item,
    join_zone,
    make_clip,
    serving,
)
from protocol import live_topic
from protocol.liveframe import LiveFrame, encode_frame
from protocol.mqtt_client import Outgoing
from schedules import PlaybackItem, Priority
from schedules.model import RelayPart
from tests.edge_agent.test_player import (
    RATE,
    START_MONO,
    START_WALL,
    Rig,
    dominant_hz,
    make_rig,
    wav_samples,
)

LOOKAHEAD_US = round(312 / RATE * 1e6)  # libopus' delay, taken off the stamps as the server does
NETWORK_S = 0.05
SESSION = "r1-20270115080000-0"
MARKER = make_marker(seed=5)


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    """Real Opus clips: b (880 Hz, 1 s), c (660 Hz, 3 s)."""
    where = tmp_path_factory.mktemp("relay-tones")
    return {"b": make_clip(where, seconds=1, freq=880), "c": make_clip(where, seconds=3, freq=660)}


def relay_item(
    item_id: str,
    start: datetime,
    *,
    relay_s: float,
    fallback: Clip,
    after: Sequence[Clip] = (),
    fallback_after_s: float = 1.0,
    session_id: str = SESSION,
    priority: Priority = Priority.NORMAL,
) -> PlaybackItem:
    """A relay of `relay_s` seconds, then `after` clips."""
    part = RelayPart(
        before_clip=0,
        source_id=1,
        source_name="VOV1",
        duration_s=relay_s,
        fallback=fallback.ref,
        playout_delay_ms=2000,
        fallback_after_s=fallback_after_s,
        session_id=session_id,
    )
    total = relay_s + sum(c.duration_s for c in after)
    return PlaybackItem(
        item_id=item_id,
        programme_id=1,
        start=start,
        end=start + timedelta(seconds=total),
        clips=tuple(c.ref for c in after),
        priority=priority,
        relays=(part,),
    )


def frames_of(track: np.ndarray, capture0_us: int) -> list[tuple[int, bytes]]:
    """Encode a source track as live frames: (capture time in us, frame bytes)."""
    enc = OpusEncoder()
    out = []
    for n, pcm in enumerate(split_frames(track)):
        capture = capture0_us + n * 20_000 - LOOKAHEAD_US
        out.append((capture, encode_frame(LiveFrame(n, capture, enc.encode(pcm)))))
    return out


def tone(seconds: float, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.asarray(np.rint(8000 * np.sin(2 * np.pi * freq * t)), dtype=np.int16)


def run(
    rig: Rig,
    items: Sequence[PlaybackItem],
    frames: Sequence[tuple[int, bytes]],
    *,
    for_s: float,
    session_id: str = SESSION,
) -> None:
    """Play the items while frames arrive at capture + NETWORK_S, for `for_s` virtual seconds."""
    relay = rig.player.relay_frames
    relay.expect(relay_windows(items))

    async def feed() -> None:
        for capture_us, data in frames:
            await rig.clock.sleep_until(START_MONO + capture_us / 1e6 + NETWORK_S - START_WALL)
            relay.offer(session_id, data)

    async def scenario() -> None:
        await rig.player.set_schedule(items, fresh=set())
        tasks = [asyncio.ensure_future(rig.player.run()), asyncio.ensure_future(feed())]
        await rig.clock.sleep_until(START_MONO + for_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(rig.clock.run(scenario()))


def output_of(rig: Rig) -> np.ndarray:
    """The item's samples from its first one (the sink leads with 960 of silence)."""
    return wav_samples(rig.tmp / "out.wav")[960:]


def window(samples: np.ndarray, a: float, b: float) -> np.ndarray:
    return samples[round(a * RATE) : round(b * RATE)]


def clip_pcm(rig: Rig, clip: Clip) -> np.ndarray:
    return decode_to_pcm(rig.cache.path(clip.sha256))


def test_relayed_frames_land_on_the_exact_samples_and_the_clip_follows(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [tones["b"], tones["c"]])
    start = rig.wall(5)
    it = relay_item("r@1", start, relay_s=3, fallback=tones["c"], after=[tones["b"]])
    # Captures not aligned to the item: the stream began 4.0071234 s before the item's start.
    start_us = round(start.timestamp() * 1e6)
    capture0_us = start_us - 4_007_123
    track = marker_track(duration_s=7, marker_times_s=[3.0, 4.0], marker=MARKER)
    frames = frames_of(track, capture0_us)
    run(rig, [it], frames, for_s=12)

    samples = output_of(rig)
    assert len(samples) == 4 * RATE
    # What the frames decode to, sample i captured at the first stamp + i, heard 2 s later.
    dec = OpusDecoder()
    decoded = np.concatenate([dec.decode(data[20:]) for _capture, data in frames])
    first = round(frames[0][0] * RATE / 1e6) + 2 * RATE - round(start_us * RATE / 1e6)
    assert first < 0  # the stream began before the item: the item joins it part way
    assert np.array_equal(samples[: 3 * RATE], decoded[-first : -first + 3 * RATE])
    # And the markers of source seconds 3 and 4 are heard 2 s after they were captured.
    found = find_markers(window(samples, 0, 3), MARKER)
    in_decoded = [x + first for x in find_markers(decoded, MARKER)]
    expected = [(capture0_us + m * 1_000_000 + 2_000_000 - start_us) * RATE / 1e6 for m in (3, 4)]
    assert np.allclose(found, in_decoded, atol=1e-6)
    assert np.allclose(found, expected, atol=2.5)  # libopus' own filter smears ~2 samples
    # The clip after the relay starts exactly at 3 s: its decoded samples, sample for sample.
    b = clip_pcm(rig, tones["b"])
    assert np.array_equal(samples[3 * RATE : 4 * RATE], b[:RATE])
    outcome = rig.log.of("r@1")
    assert outcome.outcome == "played" and outcome.reason == ""
    assert outcome.relay_mode == "relayed"
    assert (outcome.relayed_s, outcome.fallback_s, outcome.silent_s) == (3.0, 0.0, 0.0)


def test_frames_stop_silence_then_fallback_then_relayed_again(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [tones["b"], tones["c"]])
    start = rig.wall(5)
    it = relay_item(
        "r@1", start, relay_s=10, fallback=tones["c"], after=[tones["b"]], fallback_after_s=1.0
    )
    start_us = round(start.timestamp() * 1e6)
    # Stamps aligned to the item: frame n is heard at relay second n * 0.02 exactly.
    capture0_us = start_us - 2_000_000 + LOOKAHEAD_US
    frames = [f for n, f in enumerate(frames_of(tone(12), capture0_us)) if not 150 <= n < 350]
    run(rig, [it], frames, for_s=20)

    samples = output_of(rig)
    assert len(samples) == 11 * RATE
    assert abs(dominant_hz(window(samples, 0.1, 2.9)) - 1000) < 5
    assert np.abs(window(samples, 3.03, 4.0)).max() < 200  # frames gone: silence first
    # Fallback from its beginning at 4.0 s, exactly.
    c = clip_pcm(rig, tones["c"])
    assert np.array_equal(window(samples, 4.0, 7.0), c[: 3 * RATE])
    assert abs(dominant_hz(window(samples, 7.05, 9.9)) - 1000) < 5  # frames back: relayed
    b = clip_pcm(rig, tones["b"])
    assert np.array_equal(window(samples, 10.0, 11.0), b[:RATE])
    outcome = rig.log.of("r@1")
    assert outcome.outcome == "played"
    assert outcome.relay_mode == "mixed"
    assert (outcome.relayed_s, outcome.fallback_s, outcome.silent_s) == (6.0, 3.0, 1.0)
    assert outcome.reason == ""  # one second of silence is not worth a word


def test_no_frames_at_all_fallback_loops_and_the_next_clip_is_on_time(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [tones["b"], tones["c"]])
    it = relay_item(
        "r@1", rig.wall(5), relay_s=5, fallback=tones["b"], after=[tones["c"]], fallback_after_s=2
    )
    run(rig, [it], [], for_s=15)

    samples = output_of(rig)
    assert len(samples) == 8 * RATE
    assert not window(samples, 0, 2).any()
    b, c = clip_pcm(rig, tones["b"]), clip_pcm(rig, tones["c"])
    for loop in (2, 3, 4):  # the 1 s fallback from its beginning, looped
        assert np.array_equal(window(samples, loop, loop + 1), b[:RATE])
    assert np.array_equal(window(samples, 5, 8), c[: 3 * RATE])
    outcome = rig.log.of("r@1")
    assert outcome.outcome == "played" and outcome.relay_mode == "fallback"
    assert (outcome.relayed_s, outcome.fallback_s, outcome.silent_s) == (0.0, 3.0, 2.0)
    assert outcome.reason == "relay: 0.0 s relayed, 3.0 s fallback, 2.0 s silent"


def test_a_relay_only_item_without_its_fallback_plays_silence_and_says_so(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [])  # the fallback is not in the cache: not a failure
    it = relay_item("r@1", rig.wall(5), relay_s=4, fallback=tones["c"], fallback_after_s=1)
    assert it.clips == ()
    start_us = round(it.start.timestamp() * 1e6)
    frames = frames_of(tone(2), start_us - 2_000_000 + LOOKAHEAD_US)  # relay seconds 0-2 only
    run(rig, [it], frames, for_s=12)

    samples = output_of(rig)
    assert len(samples) == 4 * RATE
    assert abs(dominant_hz(window(samples, 0.1, 1.9)) - 1000) < 5
    assert np.abs(window(samples, 2.03, 4)).max() < 200
    outcome = rig.log.of("r@1")
    assert outcome.outcome == "played" and outcome.relay_mode == "relayed"
    assert (outcome.relayed_s, outcome.fallback_s, outcome.silent_s) == (2.0, 0.0, 2.0)
    assert outcome.reason == (
        "relay: 2.0 s relayed, 0.0 s fallback, 2.0 s silent; "
        f"relay fallback clip {tones['c'].sha256} is not in the cache: silence instead"
    )


def test_a_relay_preempted_by_an_emergency_resumes_live_and_tallies_what_was_heard(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [tones["b"], tones["c"]])
    start = rig.wall(5)
    relay = relay_item("r@1", start, relay_s=6, fallback=tones["c"])
    urgent = item("e@1", rig.wall(7), [tones["b"]], priority=Priority.EMERGENCY)
    start_us = round(start.timestamp() * 1e6)
    track = marker_track(duration_s=10, marker_times_s=[5.5], marker=MARKER)
    run(rig, [relay, urgent], frames_of(track, start_us - 2_000_000), for_s=20)

    # r 5-7, e 7-8, r resumes at 8 from relay second 2: the live stream as heard then.
    assert rig.items_heard() == [("r@1", 5.0, 0), ("e@1", 7.0, 2 * RATE), ("r@1", 8.0, 3 * RATE)]
    samples = output_of(rig)
    assert len(samples) == 7 * RATE
    # Source 5.5 s is heard at 5.5 s after the item's planned start, in step with every device.
    found = find_markers(samples, MARKER)
    assert np.allclose(found, [5.5 * RATE], atol=1.0), found
    outcome = rig.log.of("r@1")
    assert outcome.outcome == "played" and outcome.reason == "resumed after a preemption"
    assert outcome.relay_mode == "relayed"
    assert (outcome.relayed_s, outcome.fallback_s, outcome.silent_s) == (6.0, 0.0, 0.0)


def test_relay_frames_refuses_and_counts_what_is_not_a_scheduled_relay(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    start = datetime.fromtimestamp(START_WALL + 100, UTC)
    it = relay_item("r@1", start, relay_s=30, fallback=tones["c"])
    relay = RelayFrames(max_frames=100)
    relay.expect(relay_windows([it]))
    assert relay.expected() == {SESSION}
    capture0 = round(it.start.timestamp() * 1e6) - 2_000_000
    good = frames_of(tone(3), capture0)

    assert not relay.offer("r9-20270115080000-0", good[0][1])
    assert relay.rejected == {"unknown_session": 1}
    for garbage in (b"", b"LOAL", b"\x00" * 30, b"LOAL\x01\x02" + bytes(14) + b"\xf8"):
        assert not relay.offer(SESSION, garbage)
    assert relay.rejected["bad_frame"] == 4  # short, no magic, codec 2
    bad_opus = encode_frame(LiveFrame(0, good[0][0], b"\xff" * 9))
    assert not relay.offer(SESSION, bad_opus)
    assert relay.rejected["bad_audio"] == 1  # a header fine, an Opus payload that is not
    far = encode_frame(LiveFrame(0, capture0 - 60_000_000, good[0][1][20:]))
    assert not relay.offer(SESSION, far)
    assert relay.rejected["outside_window"] == 1

    # On the topic: a relay session's frames are taken; a live session's are passed on.
    assert relay.offer_topic(live_topic(3, SESSION), good[0][1])
    assert relay.offer_topic(live_topic(4, SESSION), good[0][1]) is True  # a second zone
    assert relay.duplicates == 1 and relay.held(SESSION) == 1
    assert not relay.offer_topic(live_topic(3, "lv-8c2e41"), good[1][1])
    assert not relay.offer_topic("loa/v1/zone/3/clip/" + "a" * 64, b"x")

    # Memory stays bounded: only the newest max_frames are held.
    for _capture, data in good[1:]:
        relay.offer(SESSION, data)
    assert relay.held(SESSION) == 100

    # A frame lost between two others is concealed (a dip, not a click).
    relay.expect({})
    assert relay.held(SESSION) == 0 and relay.expected() == frozenset()
    relay.expect(relay_windows([it]))
    for n in (0, 1, 3):
        relay.offer(SESSION, good[n][1])
    assert relay.concealed == 1 and relay.held(SESSION) == 4
    pcm, mask = relay.take(SESSION, round(good[0][0] * RATE / 1e6), 4 * FRAME_SAMPLES)
    assert mask.all() and pcm[2 * FRAME_SAMPLES : 3 * FRAME_SAMPLES].any()


def test_garbage_on_a_relay_topic_never_stops_playback(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [tones["b"], tones["c"]])
    start = rig.wall(5)
    it = relay_item("r@1", start, relay_s=2, fallback=tones["c"], after=[tones["b"]])
    start_us = round(start.timestamp() * 1e6)
    frames = frames_of(tone(4), start_us - 2_000_000)
    rng = np.random.default_rng(1)
    noisy: list[tuple[int, bytes]] = []
    for capture, data in frames:
        noisy.append((capture, data))
        noisy.append((capture, rng.bytes(int(rng.integers(0, 60)))))
        noisy.append((capture, data[:20] + rng.bytes(40)))  # its header, another payload
    run(rig, [it], noisy, for_s=12)
    outcome = rig.log.of("r@1")
    assert outcome.outcome == "played" and outcome.relay_mode == "relayed"
    assert outcome.relayed_s == 2.0
    relay = rig.player.relay_frames
    assert relay.rejected == {"bad_frame": len(frames)}
    assert relay.duplicates == len(frames)  # the first copy of a capture time is kept
    b = clip_pcm(rig, tones["b"])
    assert np.array_equal(window(output_of(rig), 2, 3), b[:RATE])


def test_an_agent_follows_its_schedules_relay_topic_and_proves_the_relay(
    broker: TestBroker, tmp_path: Path, tones: dict[str, Clip]
) -> None:
    """Through a real Mosquitto: no live join, the schedule alone makes the agent listen."""
    uid = new_device_id()
    password = broker.add_device(uid, zone_ids=(7,))
    data_dir = tmp_path / "agent"
    agent = make_agent(broker, uid, data_dir, password=password, **FAST)
    b, c = tones["b"], tones["c"]

    async def scenario() -> None:
        async with serving(broker, uid) as server, running(agent):
            await join_zone(server, agent, 7)
            start = at(6.0)
            it = relay_item("r@1", start, relay_s=3, fallback=c, after=[b], fallback_after_s=0.5)
            await server.publish_schedule(document(uid, 1, [it], extra_clips=[c]))
            await eventually(lambda: agent.runtime.schedule_version == 1, what="the schedule")
            for clip in (b, c):
                await server.publish_zone_clip(7, clip)
            await asyncio.sleep(0.3)  # the SUBSCRIBE for the relay topic is on its way
            topic = live_topic(7, SESSION)
            start_us = round(start.timestamp() * 1e6)
            # Relay seconds 0-1.5 only, sent in real time; then the station is gone.
            frames = frames_of(tone(1.5), start_us - 2_000_000 + LOOKAHEAD_US)
            for capture_us, data in frames:
                await asyncio.sleep(max(0.0, capture_us / 1e6 - time.time()))
                server.link.publish(Outgoing(topic, data, qos=0))
                server.link.publish(Outgoing(topic, b"not a frame", qos=0))
            server.link.publish(Outgoing(live_topic(7, "lv-other"), frames[0][1], qos=0))
            await eventually(lambda: len(server.events(uid)) == 1, timeout=15, what="proof")
            event = server.events(uid)[0]
            assert event.outcome == "played" and event.item_id == "r@1", event
            assert event.relay_mode == "mixed", event
            assert event.relayed_s is not None and abs(event.relayed_s - 1.5) < 0.1, event
            assert event.silent_s is not None and abs(event.silent_s - 0.5) < 0.1, event
            assert event.fallback_s is not None and abs(event.fallback_s - 1.0) < 0.1, event
            relay = agent.runtime.relay
            assert relay.rejected == {"bad_frame": len(frames)}, relay.rejected
            assert relay.stored == len(frames)
            lines = heard(data_dir, "r@1")
            assert len(lines) == 1 and abs(lines[0]["start_wall"] - start.timestamp()) < 0.1
            # A schedule without the relay: its topic is left and its frames are refused.
            await server.publish_schedule(document(uid, 2, [item("p@2", at(30), [b])]))
            await eventually(lambda: agent.runtime.schedule_version == 2, what="version 2")
            assert relay.expected() == frozenset() and topic not in agent.link._subscriptions

    run_agent(scenario(), timeout=40)
    # The other session's frame went to the live receiver, which had joined nothing.
    assert agent.rejected == {}


def test_a_short_playout_delay_waits_for_frames_read_ahead_of_their_arrival(
    tones: dict[str, Clip],
) -> None:
    """Real time: the player reads ~0.45 s ahead; frames come ~0.36 s before they are heard."""
    start = datetime.fromtimestamp(round(time.time() + 0.8, 3), UTC)
    it = relay_item("r@1", start, relay_s=1, fallback=tones["c"], fallback_after_s=0.5)
    it = it.model_copy(
        update={"relays": (it.relays[0].model_copy(update={"playout_delay_ms": 400}),)}
    )
    relay = RelayFrames()
    relay.expect(relay_windows([it]))
    start_us = round(start.timestamp() * 1e6)
    frames = frames_of(tone(1.2), start_us - 400_000 + LOOKAHEAD_US)

    def feed() -> None:
        for capture_us, data in frames:
            time.sleep(
                max(0.0, capture_us / 1e6 + 0.04 - time.time())
            )  # 20 ms of audio, 20 ms link
            relay.offer(SESSION, data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    reader = ItemReader(
        it,
        frames=relay,
        clip_path=lambda sha: Path("/nonexistent") / sha,
        clip_ready=lambda _sha: False,
        heard_at=start.timestamp(),
        server_now=time.time,
    )
    blocks = []
    for n in range(5):
        heard_at = start.timestamp() + n * 0.2
        time.sleep(max(0.0, heard_at - 0.45 - time.time()))
        blocks.append(reader.read(READ_BLOCK))
        assert time.time() < heard_at - 0.05, f"block {n} came too late to be heard"
    feeder.join()
    tally = reader.tally()
    assert (tally.relayed, tally.silent, tally.fallback) == (RATE, 0, 0)
    assert abs(dominant_hz(np.concatenate(blocks)) - 1000) < 5
