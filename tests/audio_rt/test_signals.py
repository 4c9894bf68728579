"""Marker signals: known delays are recovered to a fraction of a sample, with and without noise."""

from __future__ import annotations

import numpy as np
import pytest

from audio.pcm import SAMPLE_RATE
from audio.signals import delay_fractional, find_markers, make_marker, marker_track, skew_between

TIMES_S = [0.25, 1.0, 1.8]
TOLERANCE_S = 0.00002  # 0.02 ms


def source() -> tuple[np.ndarray, np.ndarray]:
    marker = make_marker(seed=11)
    return marker, marker_track(duration_s=2.5, marker_times_s=TIMES_S, marker=marker)


@pytest.mark.parametrize("delay_ms", [0.0, 1.234, 7.0101, 20.8333])
def test_injected_delays_are_found_within_0_02_ms(delay_ms: float) -> None:
    marker, track = source()
    delayed = delay_fractional(track, delay_ms / 1000 * SAMPLE_RATE)
    found = find_markers(delayed, marker, SAMPLE_RATE)
    assert len(found) == len(TIMES_S)
    for offset, t in zip(found, TIMES_S, strict=True):
        assert offset / SAMPLE_RATE - t == pytest.approx(delay_ms / 1000, abs=TOLERANCE_S)


def test_markers_are_found_in_noise_and_at_low_level() -> None:
    marker, track = source()
    rng = np.random.default_rng(5)
    quiet = delay_fractional(track, 59.232) * 0.1  # -20 dB, as a microphone across a room
    noisy = quiet + rng.normal(0.0, 300.0, len(quiet))  # noise about as loud as the marker
    found = find_markers(noisy, marker, SAMPLE_RATE)
    assert len(found) == len(TIMES_S)
    for offset, t in zip(found, TIMES_S, strict=True):
        assert (offset - 59.232) / SAMPLE_RATE == pytest.approx(t, abs=TOLERANCE_S)


def test_other_noise_and_silence_hold_no_markers() -> None:
    marker, track = source()
    other = make_marker(seed=12)
    assert find_markers(track, other, SAMPLE_RATE) == []
    assert find_markers(np.zeros(SAMPLE_RATE), marker, SAMPLE_RATE) == []
    assert find_markers(np.zeros(10), marker, SAMPLE_RATE) == []


def test_skew_between_two_recordings() -> None:
    _, track = source()
    rng = np.random.default_rng(9)
    a = delay_fractional(track, 30.0) + rng.normal(0, 100, len(track))
    b = delay_fractional(track, 30.0 + 0.6789 / 1000 * SAMPLE_RATE) + rng.normal(0, 100, len(track))
    assert skew_between(a, b) == pytest.approx(0.0006789, abs=TOLERANCE_S / 2)
    assert skew_between(b, a) == pytest.approx(-0.0006789, abs=TOLERANCE_S / 2)
    with pytest.raises(ValueError, match="silent"):
        skew_between(a, np.zeros(len(a)))


def test_marker_track_refuses_a_marker_that_does_not_fit() -> None:
    marker = make_marker()
    with pytest.raises(ValueError, match="does not fit"):
        marker_track(duration_s=1.0, marker_times_s=[0.99], marker=marker)
