"""An item whose clip is still arriving waits for it instead of failing "missing clip".

Virtual time (FakeClock), a real cache, real Opus clips and the real file sink, as in
test_player. A clip "arrives" the way the fetcher delivers it: chunks written, verified and
renamed into the cache, then the fetcher's clip-ready callback, which the runtime wires to
`Player.nudge`. The last tests run the real fetcher on the real clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audio.clock import SystemClock
from edge_agent.clipfetch import ClipFetcher
from edge_agent.player import PREP_S
from loa_testkit.harness import eventually
from loa_testkit.playfix import Clip, item, make_clip
from protocol.clipchunk import encode_chunk, split
from schedules import PlaybackItem, Priority
from tests.edge_agent.test_player import (
    RATE,
    START_MONO,
    START_WALL,
    Rig,
    amp_profile,
    dominant_hz,
    install,
    make_rig,
    wav_samples,
)

Step = tuple[float, Callable[[Rig], Awaitable[None] | None]]


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    """Real Opus clips: a (440 Hz, 4 s), b (880 Hz, 1 s)."""
    where = tmp_path_factory.mktemp("wait-tones")
    return {"a": make_clip(where, seconds=4, freq=440), "b": make_clip(where, seconds=1, freq=880)}


def arrives(clip: Clip) -> Callable[[Rig], None]:
    """The clip is verified into the cache, then the fetcher's ready callback fires."""

    def deliver(rig: Rig) -> None:
        install(rig.cache, clip)
        rig.player.nudge()

    return deliver


def run(rig: Rig, items: list[PlaybackItem], steps: list[Step], *, for_s: float) -> None:
    """Play `items`, doing each step at its virtual second (from the rig's start)."""

    async def scenario() -> None:
        await rig.player.set_schedule(items, fresh=set())
        task = asyncio.ensure_future(rig.player.run())
        for at, step in steps:
            await rig.clock.sleep_until(START_MONO + at)
            done = step(rig)
            if done is not None:
                await done
        await rig.clock.sleep_until(START_MONO + for_s)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(rig.clock.run(scenario()))


def test_an_emergency_waits_for_its_clip_and_starts_from_its_beginning_when_it_arrives(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [])
    rig.cache.expect([tones["b"].sha256])  # the fetcher is getting it
    urgent = item("e@1", rig.wall(2), [tones["b"]], priority=Priority.EMERGENCY)
    # It arrives 1.37 s after the planned start: between two idle wake-ups, so a start at
    # exactly arrival + PREP_S shows the ready callback woke the player.
    run(rig, [urgent], [(3.37, arrives(tones["b"]))], for_s=8)
    played = rig.log.of("e@1")
    assert played.outcome == "played" and played.reason == ""
    assert played.actual_start == pytest.approx(START_WALL + 3.37 + PREP_S, abs=1e-6)
    assert rig.items_heard() == [("e@1", round(3.37 + PREP_S, 6), 0)]
    # From its beginning: the whole second of the clip is heard, then nothing.
    samples = wav_samples(tmp_path / "out.wav")
    assert len(samples) == 960 + RATE
    assert abs(dominant_hz(samples[960:]) - 880) < 5
    assert not rig.cache.arriving(tones["b"].sha256)


def test_a_clip_arriving_before_the_instant_plays_on_time_whatever_the_level(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    # The player decides lead_s (1 s) before an instant; the clip comes 0.5 s later.
    rig = make_rig(tmp_path, [])
    rig.cache.expect([tones["b"].sha256])
    normal = item("n@1", rig.wall(3), [tones["b"]])
    run(rig, [normal], [(2.5, arrives(tones["b"]))], for_s=6)
    assert rig.log.of("n@1").outcome == "played"
    assert rig.log.of("n@1").actual_start == START_WALL + 3
    assert rig.items_heard() == [("n@1", 3.0, 0)]


def test_a_normal_item_whose_instant_passes_without_its_clip_fails_and_never_plays_late(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [])
    rig.cache.expect([tones["b"].sha256])
    normal = item("n@1", rig.wall(3), [tones["b"]])
    seen: list[int] = []

    def count(r: Rig) -> None:
        seen.append(len(r.log.outcomes))

    # Decided at 2, waits until the instant (3) less the preparation time, then fails.
    steps: list[Step] = [(2.7, count), (2.8, count), (4.0, arrives(tones["b"]))]
    run(rig, [normal], steps, for_s=8)
    assert seen == [0, 1]
    failed = rig.log.of("n@1")
    sha = tones["b"].sha256
    assert failed.outcome == "failed" and failed.actual_start is None
    assert failed.reason == f"missing clip {sha}: it did not arrive within 0.8 s"
    assert rig.items_heard() == [] and not (tmp_path / "out.wav").exists()


def test_an_emergency_whose_clip_never_arrives_fails_when_it_no_longer_fits_its_slot(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [], slot_grace_s=3)
    rig.cache.expect([tones["b"].sha256])
    urgent = item("e@1", rig.wall(2), [tones["b"]], priority=Priority.EMERGENCY)
    seen: list[int] = []

    def count(r: Rig) -> None:
        seen.append(len(r.log.outcomes))

    # Slot: 2 to 3 + 3 s grace, so the 1 s item must start by 5 (less PREP_S to prepare).
    run(rig, [urgent], [(4.7, count), (4.8, count)], for_s=8)
    assert seen == [0, 1]
    failed = rig.log.of("e@1")
    assert failed.outcome == "failed" and failed.actual_start is None
    assert failed.reason == f"missing clip {tones['b'].sha256}: it did not arrive within 3.8 s"
    assert rig.items_heard() == []


def test_a_clip_nobody_is_fetching_still_fails_the_item_at_once(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [])  # nothing expected: the clip is not on its way
    urgent = item("e@1", rig.wall(2), [tones["b"]], priority=Priority.EMERGENCY)
    seen: list[int] = []
    run(rig, [urgent], [(1.1, lambda r: seen.append(len(r.log.outcomes)))], for_s=4)
    assert seen == [1]
    assert rig.log.of("e@1").reason == f"missing clip {tones['b'].sha256}"


def test_waiting_blocks_nothing_and_the_late_emergency_preempts_what_plays(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [tones["a"]])
    rig.cache.expect([tones["a"].sha256, tones["b"].sha256])
    normal = item("n@1", rig.wall(2), [tones["a"]])
    urgent = item("e@1", rig.wall(3), [tones["b"]], priority=Priority.EMERGENCY)
    run(rig, [normal, urgent], [(4.4, arrives(tones["b"]))], for_s=12)
    # n plays from 2; e waits for its clip (due at 3), preempts n at 4.65, and n resumes
    # after it for the 1.35 s it has left.
    at = round(4.4 + PREP_S, 6)
    assert rig.items_heard() == [
        ("n@1", 2.0, 0),
        ("e@1", at, round((at - 2) * RATE)),
        ("n@1", round(at + 1, 6), round((at - 1) * RATE)),
    ]
    assert rig.log.of("e@1").outcome == "played"
    n = rig.log.of("n@1")
    assert n.outcome == "played" and n.reason == "resumed after a preemption"


def test_a_priority_item_waits_too_and_a_newer_schedule_keeps_it_waiting(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [])
    rig.cache.expect([tones["b"].sha256])
    first = item("p@1", rig.wall(2), [tones["b"]], priority=Priority.PRIORITY)
    again = item("p@1", rig.wall(2), [tones["b"]], priority=Priority.PRIORITY, volume=30)

    async def republish(r: Rig) -> None:
        await r.player.set_schedule([again], fresh=set())

    run(rig, [first], [(3.0, republish), (5.5, arrives(tones["b"]))], for_s=9)
    played = rig.log.of("p@1")
    assert played.outcome == "played"
    assert rig.items_heard() == [("p@1", 5.5 + PREP_S, 0)]
    assert rig.hardware.actions("volume") == [30]  # the newer copy of the item played


def test_an_item_removed_from_the_schedule_stops_waiting_and_never_plays(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [])
    rig.cache.expect([tones["b"].sha256])
    urgent = item("e@1", rig.wall(2), [tones["b"]], priority=Priority.EMERGENCY)

    async def withdraw(r: Rig) -> None:
        await r.player.set_schedule([], fresh=set())

    run(rig, [urgent], [(3.0, withdraw), (4.0, arrives(tones["b"]))], for_s=8)
    assert rig.log.outcomes == [] and rig.items_heard() == []


def test_an_item_moved_later_while_waiting_plays_at_its_new_instant(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [], profile=amp_profile(warmup_ms=1500, cooldown_ms=500))
    rig.cache.expect([tones["b"].sha256])
    urgent = item("e@1", rig.wall(2), [tones["b"]], priority=Priority.EMERGENCY)
    moved = item("e@1", rig.wall(10), [tones["b"]], priority=Priority.EMERGENCY)

    async def move(r: Rig) -> None:
        await r.player.set_schedule([moved], fresh=set())

    run(rig, [urgent], [(3.0, move), (4.0, arrives(tones["b"]))], for_s=14)
    assert rig.items_heard() == [("e@1", 10.0, 0)]
    assert rig.log.of("e@1").outcome == "played"
    # Back on the timeline: the amplifier is not kept on through the seven seconds.
    switches = [
        (c.value, round(c.at - START_MONO, 3))
        for c in rig.hardware.calls
        if c.action == "amplifier"
    ]
    assert switches == [(1.0, 0.5), (0.0, 3.0), (1.0, 8.5), (0.0, 11.5)]


def test_the_amplifier_warms_up_while_the_clip_arrives(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [], profile=amp_profile(warmup_ms=1500, cooldown_ms=500))
    rig.cache.expect([tones["b"].sha256])
    urgent = item("e@1", rig.wall(2), [tones["b"]], priority=Priority.EMERGENCY)
    run(rig, [urgent], [(6.0, arrives(tones["b"]))], for_s=12)
    # On for the planned start, kept on through the wait: no warm-up delay at the late start.
    assert rig.items_heard() == [("e@1", 6.0 + PREP_S, 0)]
    switches = [
        (c.value, round(c.at - START_MONO, 3))
        for c in rig.hardware.calls
        if c.action == "amplifier"
    ]
    assert switches == [(1.0, 0.5), (0.0, 7.75)]  # off its 0.5 s cool-down after the end


# -- the real fetcher on the real clock ----------------------------------------------------


def test_the_fetcher_marks_wanted_clips_arriving_and_calls_back_when_one_is_ready(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    clip = tones["b"]

    async def scenario() -> list[str]:
        rig = make_rig(tmp_path, [], clock=SystemClock())
        ready: list[str] = []
        fetcher = ClipFetcher(
            cache=rig.cache,
            db=rig.cache.db,
            clock=SystemClock(),
            send_request=lambda _r: True,
            holdoff_s=5,
            retry_max_s=5,
            on_clip_ready=ready.append,
        )
        fetcher.want([clip.sha256])
        assert rig.cache.arriving(clip.sha256) and not rig.cache.ready(clip.sha256)
        task = asyncio.ensure_future(fetcher.run())
        for chunk in split(clip.data, clip.sha256):
            fetcher.offer(clip.sha256, encode_chunk(chunk))
        await eventually(lambda: bool(ready), what="the clip-ready callback", timeout=10)
        assert rig.cache.ready(clip.sha256) and not rig.cache.arriving(clip.sha256)
        fetcher.want([])
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return ready

    assert asyncio.run(scenario()) == [clip.sha256]


def test_with_the_real_fetcher_an_emergency_plays_once_its_chunks_come(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    clock = SystemClock()
    rig = make_rig(tmp_path, [], clock=clock)
    clip = tones["b"]
    fetcher = ClipFetcher(
        cache=rig.cache,
        db=rig.cache.db,
        clock=clock,
        send_request=lambda _r: True,
        holdoff_s=5,
        retry_max_s=5,
        on_clip_ready=lambda _sha: rig.player.nudge(),  # as edge_agent.runtime wires it
    )
    start = datetime.fromtimestamp(clock.time() + 0.5, UTC)
    urgent = item("e@1", start, [clip], priority=Priority.EMERGENCY)
    sent: list[float] = []

    async def scenario() -> None:
        fetcher.want([clip.sha256])
        await rig.player.set_schedule([urgent], fresh=set())
        tasks = [asyncio.ensure_future(rig.player.run()), asyncio.ensure_future(fetcher.run())]
        await asyncio.sleep(1.5)  # past its instant: the emergency is waiting
        assert rig.log.outcomes == []
        sent.append(time.time())
        for chunk in split(clip.data, clip.sha256):
            fetcher.offer(clip.sha256, encode_chunk(chunk))
        await eventually(lambda: bool(rig.log.outcomes), what="the outcome", timeout=15)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    played = rig.log.of("e@1")
    assert played.outcome == "played" and played.actual_start is not None
    # Generous bounds (shared machine): after the chunks came, well before an idle wake-up
    # would have taken plus decoding.
    assert sent[0] < played.actual_start < sent[0] + 3
