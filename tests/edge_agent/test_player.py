"""The player on virtual time: exact starts, priorities, resume, misses, amplifier, volume.

Everything is real except time (audio.clock.FakeClock) and the outbox (a list here; the
outbox has its own tests): real Opus clips decoded by PyAV into a real file sink, whose
WAV and timing lines are checked.
"""

from __future__ import annotations

import asyncio
import json
import wave
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audio.clock import Clock, FakeClock, SystemClock
from audio.sinks import AlsaSink, AudioSink, ClockedFileSink
from edge_agent.clips import ClipCache
from edge_agent.clocksync import ClockSync
from edge_agent.hardware import SimHardware
from edge_agent.localdb import LocalDb
from edge_agent.playback import PlayOutcome
from edge_agent.player import Player
from firmware_profiles import FirmwareProfile, load_profile
from loa_testkit.playfix import Clip, item, make_clip
from protocol.clipchunk import split
from schedules import PlaybackItem, Priority

RATE = 48_000


@dataclass
class ListLog:
    """The player's play log, kept in memory."""

    outcomes: list[PlayOutcome] = field(default_factory=list)
    starts: dict[str, float] = field(default_factory=dict)
    ignored_ids: list[str] = field(default_factory=list)
    aired: list[tuple[str, float | None, float | None]] = field(default_factory=list)

    async def started(self, it: PlaybackItem, actual_start: float) -> None:
        self.starts[it.item_id] = actual_start

    async def finished(self, outcome: PlayOutcome) -> None:
        self.outcomes.append(outcome)

    async def ignored(self, items: Sequence[PlaybackItem]) -> None:
        self.ignored_ids.extend(i.item_id for i in items)

    async def on_air(self, it: PlaybackItem, *, position_s: float, at: float) -> None:
        self.aired.append((it.item_id, position_s, at))

    async def off_air(self, it: PlaybackItem, *, at: float) -> None:
        self.aired.append((it.item_id, None, at))

    def of(self, item_id: str) -> PlayOutcome:
        found = [o for o in self.outcomes if o.item.item_id == item_id]
        assert len(found) == 1, (item_id, self.outcomes)
        return found[0]


async def inline(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking work on the loop: virtual time must not jump while a thread works."""
    return fn(*args)


def install(cache: ClipCache, clip: Clip) -> None:
    """Put a clip in the cache the way the fetcher does (chunks, then verify and rename)."""
    for chunk in split(clip.data, clip.sha256):
        cache.write_chunk(clip.sha256, index=chunk.index, data=chunk.data, fresh=chunk.index == 0)
    assert cache.adopt(clip.sha256)


@dataclass
class Rig:
    """A player on a FakeClock with a real cache and file sink."""

    tmp: Path
    clock: Any
    log: ListLog
    hardware: SimHardware
    player: Player
    cache: ClipCache
    volume: list[tuple[int, bool]]

    def wall(self, seconds_from_start: float) -> datetime:
        """A server time (the FakeClock's wall clock) relative to the rig's creation."""
        return datetime.fromtimestamp(START_WALL + seconds_from_start, UTC)

    def timing(self) -> list[dict[str, Any]]:
        path = self.tmp / "timing.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def items_heard(self) -> list[tuple[str, float, int]]:
        """(label, start relative to the rig's start, samples after the first item's start)."""
        rows = [r for r in self.timing() if r["event"] == "item"]
        first = rows[0]["sample_offset"] if rows else 0
        return [
            (r["label"], round(r["start_wall"] - START_WALL, 6), r["sample_offset"] - first)
            for r in rows
        ]


START_MONO, START_WALL = 1000.0, 1_800_000_000.0


def make_rig(
    tmp: Path,
    clips: Sequence[Clip],
    *,
    profile: FirmwareProfile | None = None,
    slot_grace_s: float = 300.0,
    open_sink: Callable[[], AudioSink] | None = None,
    done: Sequence[str] = (),
    clock: Clock | None = None,
) -> Rig:
    clock = clock or FakeClock(monotonic=START_MONO, wall=START_WALL)
    db = LocalDb(data_dir=tmp / "db")
    db.open()
    cache = ClipCache(clip_dir=tmp / "clips", db=db, quota_bytes=10**9, wall=clock.time)
    cache.load(downloads=())
    for clip in clips:
        install(cache, clip)
    log = ListLog()
    hardware = SimHardware(clock=clock.monotonic)
    volume = [(60, False)]

    async def set_volume(percent: int) -> None:
        hardware.set_volume(percent)

    def file_sink() -> AudioSink:
        return ClockedFileSink(
            tmp / "out.wav", tmp / "timing.jsonl", clock, buffer_frames=1920, period_frames=480
        )

    player = Player(
        clock=clock,
        timebase=ClockSync(clock=clock, send=lambda _r: False, interval_s=30, window_s=600),
        clips=cache,
        open_sink=open_sink or file_sink,
        hardware=hardware,
        profile=profile or load_profile("sim"),
        play_log=log,
        desired_volume=lambda: volume[-1],
        set_volume=set_volume,
        done=done,
        lead_s=1.0,
        slot_grace=timedelta(seconds=slot_grace_s),
        offload=inline if isinstance(clock, FakeClock) else asyncio.to_thread,
    )
    return Rig(tmp, clock, log, hardware, player, cache, volume)


def play(
    rig: Rig, items: Sequence[PlaybackItem], *, for_s: float, fresh: Iterable[str] = ()
) -> None:
    """Hand the items to the player and let `for_s` seconds of virtual time pass."""

    async def scenario() -> None:
        await rig.player.set_schedule(items, fresh=set(fresh))
        task = asyncio.ensure_future(rig.player.run())
        await rig.clock.sleep_until(START_MONO + for_s)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(rig.clock.run(scenario()))


def wav_samples(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(np.argmax(spectrum))])


def amp_profile(
    *, warmup_ms: int, cooldown_ms: int, emergency: int = 95, max_volume: int = 80
) -> FirmwareProfile:
    data = load_profile("sim").model_dump()
    data["amplifier"] = {
        "kind": "relay", "gpio_pin": 17, "warmup_ms": warmup_ms, "cooldown_ms": cooldown_ms,
    }  # fmt: skip
    data["volume"] = {"default": 70, "emergency": emergency, "max": max_volume}
    return FirmwareProfile.model_validate(data)


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    """Real Opus clips: a (440 Hz, 4 s), b (880 Hz, 1 s), c (660 Hz, 3 s), d (550 Hz, 1 s)."""
    where = tmp_path_factory.mktemp("tones")
    return {
        "a": make_clip(where, seconds=4, freq=440),
        "b": make_clip(where, seconds=1, freq=880),
        "c": make_clip(where, seconds=3, freq=660),
        "d": make_clip(where, seconds=1, freq=550),
    }


def test_an_item_starts_exactly_at_its_planned_time(tmp_path: Path, tones: dict[str, Clip]) -> None:
    rig = make_rig(tmp_path, [tones["b"]])
    it = item("n@1", rig.wall(5), [tones["b"]], volume=40)
    play(rig, [it], for_s=10)
    outcome = rig.log.of("n@1")
    assert outcome.outcome == "played" and outcome.reason == ""
    assert outcome.actual_start == START_WALL + 5
    assert outcome.ended_at is not None and abs(outcome.ended_at - (START_WALL + 6)) < 1e-6
    assert rig.log.starts == {"n@1": START_WALL + 5}
    assert rig.items_heard() == [("n@1", 5.0, 0)]
    # The sink restarts the device half a buffer (960 samples) ahead of the start; after
    # them comes exactly the planned second, and nothing after it.
    samples = wav_samples(tmp_path / "out.wav")
    assert len(samples) == 960 + RATE and not samples[:960].any()
    assert abs(dominant_hz(samples[960:]) - 880) < 5
    assert rig.hardware.actions("volume") == [40]


def test_emergency_preempts_at_the_sample_and_the_normal_item_resumes(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    profile = amp_profile(warmup_ms=0, cooldown_ms=0, emergency=95, max_volume=80)
    rig = make_rig(tmp_path, [tones["a"], tones["b"]], profile=profile)
    normal = item("n@1", rig.wall(5), [tones["a"]], volume=90)
    urgent = item("e@1", rig.wall(6), [tones["b"]], priority=Priority.EMERGENCY)
    play(rig, [normal, urgent], for_s=15)
    # n plays 5-6, e 6-7, n resumes at 7 from 1 s and plays its last 3 s until 10.
    assert rig.items_heard() == [("n@1", 5.0, 0), ("e@1", 6.0, RATE), ("n@1", 7.0, 2 * RATE)]
    samples = wav_samples(tmp_path / "out.wav")[960:]
    assert len(samples) == 5 * RATE
    heard = [dominant_hz(samples[i * RATE + 2400 : (i + 1) * RATE - 2400]) for i in range(5)]
    assert [round(hz / 10) * 10 for hz in heard] == [440, 880, 440, 440, 440]
    e, n = rig.log.of("e@1"), rig.log.of("n@1")
    assert e.outcome == "played" and e.actual_start == START_WALL + 6
    assert n.outcome == "played" and n.reason == "resumed after a preemption"
    assert n.actual_start == START_WALL + 5 and abs(n.ended_at - (START_WALL + 10)) < 1e-6  # type: ignore[operator]
    # Item volume capped by the profile's maximum; the emergency at the profile's level.
    assert rig.hardware.actions("volume") == [80, 95, 80]
    assert rig.hardware.actions("amplifier") == [1.0, 0.0]


def test_a_preempted_item_whose_slot_ends_is_recorded_as_preempted(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [tones["c"], tones["a"]], slot_grace_s=0)
    normal = item("n@1", rig.wall(5), [tones["c"]])
    urgent = item("e@1", rig.wall(6), [tones["a"]], priority=Priority.PRIORITY)
    play(rig, [normal, urgent], for_s=15)
    n = rig.log.of("n@1")
    assert n.outcome == "preempted" and "slot ended" in n.reason
    assert n.actual_start == START_WALL + 5 and n.ended_at == START_WALL + 6
    assert rig.log.of("e@1").outcome == "played"
    assert rig.items_heard() == [("n@1", 5.0, 0), ("e@1", 6.0, RATE)]


def test_equal_priority_waits_and_plays_late_or_is_missed(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    def items(rig: Rig) -> list[PlaybackItem]:
        return [item("n@1", rig.wall(5), [tones["c"]]), item("n@2", rig.wall(6), [tones["b"]])]

    first = make_rig(tmp_path / "grace", [tones["c"], tones["b"]], slot_grace_s=5)
    play(first, items(first), for_s=15)
    assert first.items_heard() == [("n@1", 5.0, 0), ("n@2", 8.0, 3 * RATE)]
    assert [o.outcome for o in first.log.outcomes] == ["played", "played"]

    second = make_rig(tmp_path / "tight", [tones["c"], tones["b"]], slot_grace_s=1)
    play(second, items(second), for_s=15)
    missed = second.log.of("n@2")
    assert missed.outcome == "missed" and "no longer fit its slot" in missed.reason
    assert missed.actual_start is None and second.items_heard() == [("n@1", 5.0, 0)]


def test_a_missing_clip_fails_the_item_and_nothing_plays(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [])
    play(rig, [item("n@1", rig.wall(3), [tones["b"]])], for_s=6)
    failed = rig.log.of("n@1")
    assert failed.outcome == "failed" and failed.reason == f"missing clip {tones['b'].sha256}"
    assert rig.items_heard() == [] and not (tmp_path / "out.wav").exists()


def test_the_amplifier_warms_up_before_and_cools_down_after_but_not_between(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    profile = amp_profile(warmup_ms=1500, cooldown_ms=2000)
    rig = make_rig(tmp_path, [tones["b"], tones["d"]], profile=profile)
    items = [
        item("n@1", rig.wall(5), [tones["b"]]),
        item("n@2", rig.wall(7), [tones["d"]]),  # 1 s after n@1: within cooldown + warm-up
        item("n@3", rig.wall(20), [tones["b"]]),
    ]
    play(rig, items, for_s=30)
    switches = [
        (c.value, round(c.at - START_MONO, 3))
        for c in rig.hardware.calls
        if c.action == "amplifier"
    ]
    assert switches == [(1.0, 3.5), (0.0, 10.0), (1.0, 18.5), (0.0, 23.0)]
    assert [o.outcome for o in rig.log.outcomes] == ["played"] * 3
    assert [h[1] for h in rig.items_heard()] == [5.0, 7.0, 20.0]


def test_a_late_amplifier_delays_the_start_by_its_warm_up(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [tones["b"]], profile=amp_profile(warmup_ms=1500, cooldown_ms=0))
    # Due half a second from now: the amplifier cannot be warm in time.
    play(rig, [item("e@1", rig.wall(0.5), [tones["b"]], priority=Priority.EMERGENCY)], for_s=5)
    assert rig.items_heard()[0][1] == 1.5
    assert rig.log.of("e@1").actual_start == START_WALL + 1.5


def test_items_missed_while_down_are_reported_and_unknown_old_ones_ignored(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [tones["b"]], slot_grace_s=60, done=["n@done"])
    held = item("n@held", rig.wall(-600), [tones["b"]])
    fresh_old = item("n@new", rig.wall(-600), [tones["b"]])
    late = item("n@late", rig.wall(-30), [tones["b"]])  # still fits its slot: plays late
    finished = item("n@done", rig.wall(-600), [tones["b"]])
    play(rig, [held, fresh_old, late, finished], for_s=3, fresh={"n@new"})
    missed = rig.log.of("n@held")
    assert missed.outcome == "missed" and "agent was not running" in missed.reason
    assert rig.log.ignored_ids == ["n@new"]
    assert rig.log.of("n@late").outcome == "played"
    assert {o.item.item_id for o in rig.log.outcomes} == {"n@held", "n@late"}


def test_muted_devices_still_play_emergencies(tmp_path: Path, tones: dict[str, Clip]) -> None:
    rig = make_rig(tmp_path, [tones["b"], tones["d"]])
    rig.volume.append((50, True))
    normal = item("n@1", rig.wall(3), [tones["b"]])
    urgent = item("e@1", rig.wall(5), [tones["d"]], priority=Priority.EMERGENCY)
    play(rig, [normal, urgent], for_s=8)
    assert rig.log.of("n@1").outcome == "failed" and "muted" in rig.log.of("n@1").reason
    assert rig.log.of("e@1").outcome == "played"
    assert rig.hardware.actions("volume") == [100]  # the sim profile's emergency volume


def test_an_item_removed_from_the_schedule_stops(tmp_path: Path, tones: dict[str, Clip]) -> None:
    rig = make_rig(tmp_path, [tones["a"]])
    it = item("n@1", rig.wall(2), [tones["a"]])

    async def scenario() -> None:
        await rig.player.set_schedule([it], fresh=set())
        task = asyncio.ensure_future(rig.player.run())
        await rig.clock.sleep_until(START_MONO + 3)
        await rig.player.set_schedule([], fresh=set())
        await rig.clock.sleep_until(START_MONO + 8)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(rig.clock.run(scenario()))
    outcome = rig.log.of("n@1")
    assert outcome.outcome == "preempted" and outcome.reason == "removed from the schedule"
    assert outcome.ended_at is not None and 0.9 < outcome.ended_at - (START_WALL + 2) < 1.2
    assert len(wav_samples(tmp_path / "out.wav")) < 960 + 1.2 * RATE


def test_an_output_that_cannot_open_fails_the_item(tmp_path: Path, tones: dict[str, Clip]) -> None:
    # Real time: opening ALSA waits on a real process, which virtual time cannot follow.
    clock = SystemClock()
    rig = make_rig(
        tmp_path,
        [tones["b"]],
        clock=clock,
        open_sink=lambda: AlsaSink("hw:CARD=NoSuchCard,DEV=9", clock=clock),
    )
    start = datetime.fromtimestamp(clock.time() + 1.2, UTC)

    async def scenario() -> None:
        await rig.player.set_schedule([item("n@1", start, [tones["b"]])], fresh=set())
        task = asyncio.ensure_future(rig.player.run())
        await asyncio.sleep(2.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    failed = rig.log.of("n@1")
    assert failed.outcome == "failed" and failed.reason == "output error"


def test_a_new_version_with_the_playing_item_neither_stops_nor_repeats_it(
    tmp_path: Path, tones: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [tones["a"], tones["b"]])
    playing = item("n@1", rig.wall(2), [tones["a"]])
    added = item("n@2", rig.wall(8), [tones["b"]])

    async def scenario() -> None:
        await rig.player.set_schedule([playing], fresh={"n@1"})
        task = asyncio.ensure_future(rig.player.run())
        await rig.clock.sleep_until(START_MONO + 3)
        await rig.player.set_schedule([playing, added], fresh={"n@2"})
        await rig.clock.sleep_until(START_MONO + 12)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(rig.clock.run(scenario()))
    assert rig.items_heard() == [("n@1", 2.0, 0), ("n@2", 8.0, 4 * RATE + 960)]
    assert [(o.item.item_id, o.outcome) for o in rig.log.outcomes] == [
        ("n@1", "played"),
        ("n@2", "played"),
    ]
