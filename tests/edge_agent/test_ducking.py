"""Ducking (issue 17): the pure mixer, and the real player recording a ducked background.

The player tests run the player on virtual time with real clips (Opus made by ffmpeg, WAV
written here) into the clocked file sink, and measure the recording: the background's
level by a least-squares fit of its tone, window by window, next to the announcement's.
"""

from __future__ import annotations

import asyncio
import hashlib
import wave
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from audio.pcm import Pcm
from edge_agent.ducking import HALF, Bed, MixReader, Ramp, db_gain, mix, shape
from edge_agent.playback import ClipReader
from loa_testkit.playfix import Clip, item, make_clip
from schedules import PlaybackItem, Priority
from tests.edge_agent.test_player import RATE, START_WALL, make_rig, play, wav_samples
from tests.edge_agent.test_relay_playback import frames_of, relay_item, run

BG_HZ, ANN_HZ = 400.0, 1000.0  # whole periods in 5 ms windows: the two fits do not leak


def tone(seconds: float, hz: float, amplitude: float) -> Pcm:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.asarray(np.rint(amplitude * np.sin(2 * np.pi * hz * t)), dtype=np.int16)


def level_db(samples: NDArray[np.float64], hz: float, other: float) -> float:
    """Level (dB re full scale) of the `hz` tone in samples holding it and maybe `other`."""
    t = np.arange(len(samples)) / RATE
    basis = [np.sin(2 * np.pi * f * t) for f in (hz, other)]
    basis += [np.cos(2 * np.pi * f * t) for f in (hz, other)]
    coef, *_ = np.linalg.lstsq(np.stack(basis, axis=1), samples, rcond=None)
    return float(20 * np.log10(max(np.hypot(coef[0], coef[2]), 1e-9) / 32767))


def envelope(samples: Pcm, hz: float, other: float, *, hop: int = 48) -> NDArray[np.float64]:
    """The tone's level in 5 ms windows every `hop` samples (window i centred at i*hop + 120)."""
    x = samples.astype(np.float64)
    return np.array([level_db(x[i : i + 240], hz, other) for i in range(0, len(x) - 240, hop)])


def crossing(env: NDArray[np.float64], level: float, *, after: float, hop: int = 48) -> float:
    """Seconds at which the envelope first crosses `level` after `after` s (interpolated).

    Windows straddling the announcement's first or last sample fit badly (its tone starts
    or stops inside them): the ramps are measured between 1/4 and 3/4 of their depth.
    """
    first = int(np.ceil((after * RATE - 120) / hop))
    falling = env[first] > level
    beyond = env[first:] < level if falling else env[first:] > level
    i = first + int(np.argmax(beyond))
    assert beyond[i - first] and i > first, "no crossing"
    frac = (level - env[i - 1]) / (env[i] - env[i - 1])
    return float(((i - 1 + frac) * hop + 120) / RATE)


# -- the pure mixer --------------------------------------------------------------------------


def test_a_ramp_is_a_straight_line_in_db_of_its_length_ending_at_its_instant() -> None:
    ramp = Ramp(14_400, 0.0, -18.0, ends_at=1000.75)  # 300 ms, full at 0.75 s into it
    db = 20 * np.log10(ramp.gains(0, RATE, start_mono=1000.0))
    first_down = int(np.argmax(db < -1e-9))
    first_full = int(np.argmax(db <= -18 + 1e-9))
    assert first_full == 36_000  # the instant's sample is fully down, not one later
    assert first_full - first_down + 1 == 14_400
    assert np.all(db[:first_down] == 0) and np.allclose(db[36_000:], -18)
    assert np.allclose(np.diff(db[first_down - 1 : first_full + 1]), -18 / 14_400)
    # Blocks in any size give the same gains (each depends on its sample index only).
    parts = [ramp.gains(a, b - a, start_mono=1000.0) for a, b in ((0, 30_001), (30_001, RATE))]
    assert np.array_equal(np.concatenate(parts), ramp.gains(0, RATE, start_mono=1000.0))
    dc = np.full(RATE, 16000, dtype=np.int16)
    shaped = shape(dc, [ramp], 0, start_mono=1000.0)
    assert np.array_equal(shaped, np.rint(16000 * 10 ** (db / 20)).astype(np.int16))
    # The ramp back up starts on the sample before the segment: its first is one step up.
    up = 20 * np.log10(Ramp(14_400, -18.0, 0.0).gains(0, RATE, start_mono=1000.0))
    assert up[0] == pytest.approx(-18 + 18 / 14_400) and int(np.argmax(up >= 0)) == 14_399


@pytest.mark.parametrize("gain_db", [-18.0, -6.0, -40.0])
def test_the_bed_sits_at_its_gain_under_the_foreground(gain_db: float) -> None:
    fg, bed = tone(1.0, ANN_HZ, 16000), tone(1.0, BG_HZ, 16000)
    out = mix(fg, bed, gain_db=gain_db).astype(np.float64)
    measured = level_db(out, BG_HZ, ANN_HZ) - level_db(bed.astype(np.float64), BG_HZ, ANN_HZ)
    assert abs(measured - gain_db) < 0.05
    assert abs(level_db(out, ANN_HZ, BG_HZ) - level_db(fg.astype(np.float64), ANN_HZ, BG_HZ)) < 0.01


def test_where_the_bed_is_silent_the_foreground_is_bit_identical() -> None:
    rng = np.random.default_rng(7)
    fg = np.asarray(rng.integers(-32768, 32768, 3 * RATE), dtype=np.int16)  # full-scale noise
    bed = tone(3.0, BG_HZ, 32767)
    bed[RATE : 2 * RATE] = 0
    out = mix(fg, bed, gain_db=-3.0)
    assert np.array_equal(out[RATE : 2 * RATE], fg[RATE : 2 * RATE])
    assert np.array_equal(mix(fg, np.zeros_like(fg), gain_db=-3.0), fg)
    assert not np.array_equal(out[:RATE], fg[:RATE])  # the bed is there elsewhere


@pytest.mark.parametrize("gain_db", [-3.0, 0.0])
def test_two_full_scale_signals_never_clip_and_the_bed_gain_moves_smoothly(gain_db: float) -> None:
    fg, bed = tone(1.0, ANN_HZ, 32767), tone(1.0, BG_HZ + 37, 32767)
    out = mix(fg, bed, gain_db=gain_db).astype(np.float64)
    assert np.abs(out).max() <= 32767
    hard = np.clip(fg + bed * db_gain(gain_db), -32768, 32767)
    assert np.abs(fg + bed * db_gain(gain_db)).max() > 40000  # it would clip
    assert not np.allclose(out, hard)
    # The bed's applied gain, read back where it is loud enough to read it.
    scaled = bed * db_gain(gain_db)
    loud = np.abs(scaled) > 8000
    applied = (out - fg)[loud] / scaled[loud]
    assert applied.min() >= -1e-3 and applied.max() <= 1 + 1e-3
    index = np.flatnonzero(loud)
    adjacent = np.diff(index) == 1
    assert np.abs(np.diff(applied)[adjacent]).max() <= 1 / (2 * HALF + 1) + 2e-4  # no steps


class Array:
    """A reader over an array (what a clip reader would decode)."""

    def __init__(self, pcm: Pcm) -> None:
        self.pcm = pcm

    def read(self, n_samples: int) -> Pcm:
        out, self.pcm = self.pcm[:n_samples], self.pcm[n_samples:]
        return out


def test_streaming_in_any_blocks_equals_the_pure_mix_and_the_bed_comes_back_exactly() -> None:
    rng = np.random.default_rng(3)
    fg = np.asarray(rng.integers(-32768, 32768, RATE), dtype=np.int16)
    bed_audio = tone(2.0, BG_HZ, 32767)
    expected = mix(fg, bed_audio[:RATE], gain_db=-6.0)
    bed = Bed("n@1", gain_db=-6.0, ramp=14_400)
    bed.take(Array(bed_audio[700:].copy()), bed_audio[:700].copy(), 5000, start_sample=100)
    assert bed.position == 5100
    reader = MixReader(Array(fg[4000:].copy()), bed, first=fg[:4000].copy())
    got = [reader.read(n) for n in (9600, 7, 960, 9600, 13)]
    streamed = np.concatenate(got)
    assert np.array_equal(streamed, expected[: len(streamed)])
    # Stopped after 12 000 samples were heard: the bed gives back the rest, sample-exact.
    reader.hand_back(reader, streamed[12_000:], 12_000)
    assert bed.position == 5100 + 12_000
    assert bed.root_heard == 5000 + 12_000
    assert np.array_equal(bed.read(30_000), bed_audio[12_000:42_000])


# -- the real player -------------------------------------------------------------------------


def wav_clip(directory: Path, pcm: Pcm) -> Clip:
    """A WAV clip of exactly these samples (decodes bit-exact)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"pcm-{hashlib.sha256(pcm.tobytes()).hexdigest()[:8]}.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.astype("<i2").tobytes())
    data = path.read_bytes()
    return Clip(data, hashlib.sha256(data).hexdigest(), len(pcm) / RATE)


def ducking(it: PlaybackItem, **fields: object) -> PlaybackItem:
    return PlaybackItem.model_validate({**it.model_dump(), "announce": "duck", **fields})


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    where = tmp_path_factory.mktemp("duck")
    return {
        "bg": make_clip(where, seconds=10, freq=BG_HZ),  # Opus, -18 dBFS (lavfi's sine)
        "ann": make_clip(where, seconds=2, freq=ANN_HZ),
    }


@pytest.mark.parametrize(("duck_db", "ramp_ms"), [(-18.0, 300), (-24.0, 450)])
def test_the_background_plays_on_ducked_under_the_announcement(
    tmp_path: Path, clips: dict[str, Clip], duck_db: float, ramp_ms: int
) -> None:
    rig = make_rig(tmp_path, [clips["bg"], clips["ann"]])
    bg = item("n@1", rig.wall(5), [clips["bg"]])
    fields = (
        {} if duck_db == -18 and ramp_ms == 300 else {"duck_db": duck_db, "duck_ramp_ms": ramp_ms}
    )
    ann = ducking(item("p@1", rig.wall(8), [clips["ann"]], priority=Priority.PRIORITY), **fields)
    play(rig, [bg, ann], for_s=18)
    # The announcement's first sample is at its planned instant; the background goes on
    # after it from where it is by then, and ends when planned (nothing was paused).
    assert rig.items_heard() == [("n@1", 5.0, 0), ("p@1", 8.0, 3 * RATE), ("n@1", 10.0, 5 * RATE)]
    out = wav_samples(tmp_path / "out.wav")[960:]
    assert len(out) == 10 * RATE
    n, p = rig.log.of("n@1"), rig.log.of("p@1")
    assert p.outcome == "played" and p.actual_start == START_WALL + 8
    assert n.outcome == "played" and "under an announcement" in n.reason
    assert n.actual_start == START_WALL + 5 and n.ended_at == pytest.approx(START_WALL + 15)
    assert [a for a in rig.log.aired if a[0] == "n@1"][-1][1] == pytest.approx(5.0)
    x = out.astype(np.float64)
    before = level_db(x[RATE // 2 : 2 * RATE + RATE // 2], BG_HZ, ANN_HZ)
    under = level_db(x[3 * RATE + 2400 : 5 * RATE - 2400], BG_HZ, ANN_HZ)
    after = level_db(x[6 * RATE : 9 * RATE], BG_HZ, ANN_HZ)
    assert abs(under - before - duck_db) <= 0.5
    assert abs(after - before) <= 0.5
    assert abs(level_db(x[3 * RATE + 2400 : 5 * RATE - 2400], ANN_HZ, BG_HZ) - before) < 1
    # Ramps: straight in dB, so two crossings give where each starts and how long it is.
    env = envelope(out[2 * RATE : 4 * RATE], BG_HZ, ANN_HZ) - before
    t1 = crossing(env, duck_db / 4, after=0.1)
    t2 = crossing(env, duck_db * 3 / 4, after=0.1)
    down = (t2 - t1) * 2
    assert abs(down * 1000 - ramp_ms) <= 5
    assert abs(2 + t2 + down / 4 - 3.0) <= 0.002  # fully down at the announcement's 1st sample
    env = envelope(out[4 * RATE : 6 * RATE], BG_HZ, ANN_HZ) - before
    u1 = crossing(env, duck_db * 3 / 4, after=1.003)
    u2 = crossing(env, duck_db / 4, after=1.003)
    up = (u2 - u1) * 2
    assert abs(up * 1000 - ramp_ms) <= 5
    assert abs(4 + u1 - up / 4 - 5.0) <= 0.002  # up from the announcement's last sample
    assert np.abs(out).max() < 32767
    # The finished segments stay listed (diagnostics) without the readers they shared: no
    # bed (its decoder, its buffered samples) outlives the items.
    assert len(rig.player.segments) == 3
    for seg in rig.player.segments:
        assert seg.bed is None and seg.resumes is None and seg.on_stop is None


def test_where_the_background_is_silent_the_announcement_is_bit_identical(
    tmp_path: Path, clips: dict[str, Clip]
) -> None:
    bg_pcm = np.concatenate([tone(2.0, BG_HZ, 20000), np.zeros(5 * RATE, dtype=np.int16)])
    bg_clip = wav_clip(tmp_path / "made", bg_pcm)
    rig = make_rig(tmp_path / "rig", [bg_clip, clips["ann"]])
    bg = item("n@1", rig.wall(5), [bg_clip])
    ann = ducking(item("p@1", rig.wall(8), [clips["ann"]], priority=Priority.PRIORITY))
    play(rig, [bg, ann], for_s=14)
    out = wav_samples(tmp_path / "rig" / "out.wav")[960:]
    decoded = ClipReader([rig.cache.path(clips["ann"].sha256)]).read(2 * RATE)
    assert len(decoded) == 2 * RATE and np.abs(decoded).max() > 1000
    assert np.array_equal(out[3 * RATE : 5 * RATE], decoded)
    assert np.array_equal(out[: 2 * RATE], bg_pcm[: 2 * RATE])  # the WAV decodes exactly
    n = rig.log.of("n@1")  # it did play on under the announcement: not a cut that passed
    assert n.outcome == "played" and "under an announcement" in n.reason


def test_an_emergency_never_ducks_it_cuts(tmp_path: Path, clips: dict[str, Clip]) -> None:
    rig = make_rig(tmp_path, [clips["bg"], clips["ann"]])
    bg = item("n@1", rig.wall(5), [clips["bg"]])
    urgent = ducking(item("e@1", rig.wall(8), [clips["ann"]], priority=Priority.EMERGENCY))
    assert not urgent.ducks
    play(rig, [bg, urgent], for_s=20)
    # Cut: the background pauses for the 2 s and resumes from 3 s, ending 2 s later.
    assert rig.items_heard() == [("n@1", 5.0, 0), ("e@1", 8.0, 3 * RATE), ("n@1", 10.0, 5 * RATE)]
    out = wav_samples(tmp_path / "out.wav")[960:]
    assert len(out) == 12 * RATE
    x = out.astype(np.float64)
    before = level_db(x[RATE // 2 : 2 * RATE + RATE // 2], BG_HZ, ANN_HZ)
    assert level_db(x[3 * RATE : 5 * RATE], BG_HZ, ANN_HZ) < before - 40
    assert level_db(x[2 * RATE : 3 * RATE - 480], BG_HZ, ANN_HZ) > before - 0.5  # no ramp
    assert rig.log.of("n@1").reason == "resumed after a preemption"


def test_a_background_removed_while_ducked_falls_silent_under_the_announcement(
    tmp_path: Path, clips: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [clips["bg"], clips["ann"]])
    bg = item("n@1", rig.wall(5), [clips["bg"]])
    ann = ducking(item("p@1", rig.wall(8), [clips["ann"]], priority=Priority.PRIORITY))

    async def scenario() -> None:
        await rig.player.set_schedule([bg, ann], fresh=set())
        task = asyncio.ensure_future(rig.player.run())
        await rig.clock.sleep_until(1000.0 + 8.5)
        await rig.player.set_schedule([ann], fresh=set())
        await rig.clock.sleep_until(1000.0 + 14)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(rig.clock.run(scenario()))
    out = wav_samples(tmp_path / "out.wav")[960:].astype(np.float64)
    assert len(out) == 5 * RATE  # nothing of it after the announcement
    before = level_db(out[RATE // 2 : 2 * RATE], BG_HZ, ANN_HZ)
    assert level_db(out[3 * RATE + 2400 : 3 * RATE + 24_000], BG_HZ, ANN_HZ) == pytest.approx(
        before - 18, abs=0.5
    )
    assert level_db(out[4 * RATE : 5 * RATE], BG_HZ, ANN_HZ) < before - 60
    assert rig.log.of("n@1").outcome == "preempted"


def test_a_ducked_relay_stays_in_step_and_tallies_every_relayed_second(
    tmp_path: Path, clips: dict[str, Clip]
) -> None:
    short = make_clip(tmp_path / "made", seconds=1, freq=ANN_HZ)
    rig = make_rig(tmp_path, [short])
    start = rig.wall(5)
    relay = relay_item("r@1", start, relay_s=6, fallback=short)
    ann = ducking(item("p@1", rig.wall(7), [short], priority=Priority.PRIORITY))
    track = tone(10, BG_HZ, 8000)
    run(rig, [relay, ann], frames_of(track, round(start.timestamp() * 1e6) - 2_000_000), for_s=16)
    assert rig.items_heard() == [("r@1", 5.0, 0), ("p@1", 7.0, 2 * RATE), ("r@1", 8.0, 3 * RATE)]
    out = wav_samples(tmp_path / "out.wav")[960:].astype(np.float64)
    assert len(out) == 6 * RATE
    before = level_db(out[RATE // 2 : 3 * RATE // 2], BG_HZ, ANN_HZ)
    under = level_db(out[2 * RATE + 2400 : 3 * RATE - 2400], BG_HZ, ANN_HZ)
    assert abs(under - before + 18) <= 0.5
    # In step: the relay's tone keeps its phase across the announcement (no samples lost).
    t = np.arange(len(out)) / RATE
    for a, b in ((1.0, 1.5), (4.0, 5.5)):
        part = slice(round(a * RATE), round(b * RATE))
        fit = np.corrcoef(out[part], np.sin(2 * np.pi * BG_HZ * t[part] + phase(out, part, t)))
        assert fit[0, 1] > 0.99
    assert (
        abs(phase(out, slice(RATE, 2 * RATE), t) - phase(out, slice(4 * RATE, 5 * RATE), t)) < 0.1
    )
    outcome = rig.log.of("r@1")
    assert outcome.outcome == "played" and outcome.relay_mode == "relayed"
    assert (outcome.relayed_s, outcome.fallback_s, outcome.silent_s) == (6.0, 0.0, 0.0)


def phase(out: NDArray[np.float64], part: slice, t: NDArray[np.float64]) -> float:
    """The phase of the background tone in a stretch (radians, against the output's time)."""
    s, c = np.sin(2 * np.pi * BG_HZ * t[part]), np.cos(2 * np.pi * BG_HZ * t[part])
    return float(np.arctan2(out[part] @ c, out[part] @ s))


def test_an_announcement_decided_late_starts_when_its_whole_ramp_fits(
    tmp_path: Path, clips: dict[str, Clip]
) -> None:
    rig = make_rig(tmp_path, [clips["bg"], clips["ann"]])
    bg = item("n@1", rig.wall(5), [clips["bg"]])
    ann = ducking(item("p@1", rig.wall(8), [clips["ann"]], priority=Priority.PRIORITY))

    async def scenario() -> None:
        await rig.player.set_schedule([bg], fresh=set())
        task = asyncio.ensure_future(rig.player.run())
        await rig.clock.sleep_until(1000.0 + 7.9)  # it arrives 0.1 s before its instant
        await rig.player.set_schedule([bg, ann], fresh={"p@1"})
        await rig.clock.sleep_until(1000.0 + 18)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(rig.clock.run(scenario()))
    heard = rig.items_heard()
    assert [h[0] for h in heard] == ["n@1", "p@1", "n@1"]
    late = heard[1][1] - 3 - 5  # seconds after its planned instant
    assert 0.25 <= late <= 0.4  # not before the player could decide (PREP_S), ramp included
    out = wav_samples(tmp_path / "out.wav")[960:]
    x = out.astype(np.float64)
    before = level_db(x[RATE // 2 : 2 * RATE + RATE // 2], BG_HZ, ANN_HZ)
    env = envelope(out[2 * RATE : 4 * RATE], BG_HZ, ANN_HZ) - before
    t1, t2 = crossing(env, -18 / 4, after=0.1), crossing(env, -18 * 3 / 4, after=0.1)
    assert abs((t2 - t1) * 2 - 0.3) <= 0.005  # the whole ramp, not one cut short
    assert abs(2 + t2 + (t2 - t1) / 2 - (3 + late)) <= 0.002  # down when the announcement starts
    assert rig.log.of("n@1").outcome == "played" and rig.log.of("p@1").outcome == "played"
