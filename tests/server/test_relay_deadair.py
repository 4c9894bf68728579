"""The dead-air detector: silent or gone too long is dead air; a second of audio ends it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm
from server.relay.deadair import DeadAirDetector, level_dbfs

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE


def tone(dbfs: float) -> Pcm:
    """One 20 ms frame of 440 Hz sine at an RMS level of `dbfs`."""
    t = np.arange(FRAME_SAMPLES) / SAMPLE_RATE
    amplitude = 32768 * 10 ** (dbfs / 20) * math.sqrt(2)
    return (amplitude * np.sin(2 * math.pi * 440 * t)).astype(np.int16)


class Clock:
    """An injected clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(detector: DeadAirDetector, clock: Clock, pcm: Pcm | None, seconds: float) -> list[bool]:
    """Feed `seconds` of frames; the dead flag after each one."""
    out = []
    for _ in range(round(seconds / FRAME_S)):
        detector.feed(pcm)
        out.append(detector.dead)
        clock.now += FRAME_S
    return out


def make(clock: Clock, dead_after_s: float = 5.0) -> DeadAirDetector:
    return DeadAirDetector(dead_after_s=dead_after_s, silence_dbfs=-55.0, clock=clock)


def test_level_of_a_sine_and_of_digital_silence() -> None:
    assert level_dbfs(tone(-20.0)) == pytest.approx(-20.0, abs=0.2)
    assert level_dbfs(np.zeros(FRAME_SAMPLES, dtype=np.int16)) == -math.inf
    assert level_dbfs(np.zeros(0, dtype=np.int16)) == -math.inf


def test_audio_keeps_the_relay_on_air() -> None:
    clock = Clock()
    d = make(clock)
    assert not any(run(d, clock, tone(-30.0), 60.0))
    assert d.on_air and d.dead_since is None


def test_a_quiet_source_is_dead_air_only_after_the_setting() -> None:
    clock = Clock()
    d = make(clock)
    run(d, clock, tone(-20.0), 2.0)
    quiet_from = clock.now
    flags = run(d, clock, tone(-70.0), 6.0)  # below -55 dBFS: silent
    first_dead = flags.index(True) * FRAME_S
    assert first_dead == pytest.approx(5.0, abs=FRAME_S)
    assert d.dead_since == pytest.approx(quiet_from) and not d.gone


def test_a_gone_source_is_dead_air_and_says_so() -> None:
    clock = Clock()
    d = make(clock, dead_after_s=1.0)
    changes = [d.feed(None, 1000.0 + i * FRAME_S) for i in range(50)]  # up to 0.98 s
    change = d.feed(None, 1001.0)
    assert not any(changes) and change is not None
    assert change.dead and change.gone and change.since == pytest.approx(1000.0)


def test_a_quiet_stretch_shorter_than_the_setting_changes_nothing() -> None:
    clock = Clock()
    d = make(clock)
    for _ in range(5):
        assert not any(run(d, clock, tone(-70.0), 4.9))
        assert not any(run(d, clock, tone(-20.0), 0.1))


def test_a_second_of_audio_ends_dead_air_and_a_gap_restarts_the_count() -> None:
    clock = Clock()
    d = make(clock, dead_after_s=1.0)
    run(d, clock, None, 1.5)
    assert d.dead
    assert all(run(d, clock, tone(-20.0), 0.9))  # not yet a second
    run(d, clock, None, 0.04)  # a gap: the second starts again
    back_from = clock.now
    flags = run(d, clock, tone(-20.0), 1.5)
    assert flags.index(False) * FRAME_S == pytest.approx(1.0, abs=FRAME_S)
    assert d.on_air and d.dead_since is None
    assert back_from > 1000.0


def test_the_change_reports_when_audio_came_back() -> None:
    clock = Clock()
    d = make(clock, dead_after_s=1.0)
    for _ in range(100):
        d.feed(None, clock.now)
        clock.now += FRAME_S
    back = clock.now
    changes = []
    for _ in range(60):
        changes.append(d.feed(tone(-20.0), clock.now))
        clock.now += FRAME_S
    found = [c for c in changes if c is not None]
    assert len(found) == 1 and not found[0].dead
    assert found[0].since == pytest.approx(back)
    assert found[0].at - back == pytest.approx(1.0, abs=1e-3)
