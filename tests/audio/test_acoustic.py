"""The simulated acoustic path: each fault does to the played signal what it says."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from audio.acoustic import AcousticPath, hear

SR = 48_000


def tone(hz: float, seconds: float = 0.5, amplitude: float = 0.1) -> NDArray[np.float64]:
    """A sine of `hz` at `amplitude`."""
    t = np.arange(round(seconds * SR)) / SR
    return amplitude * np.sin(2 * np.pi * hz * t)


def amplitude_at(x: NDArray[np.floating], hz: float) -> float:
    """The amplitude of the `hz` component of `x` (hz a whole number of cycles in x)."""
    spectrum = np.fft.rfft(x.astype(np.float64))
    return float(2 * np.abs(spectrum[round(hz * len(x) / SR)]) / len(x))


def quiet(**changes: Any) -> AcousticPath:
    """A path without noise or delay, with `changes`: what it does is then exact."""
    return replace(AcousticPath(noise_dbfs=None, distance_delay_ms=0.0), **changes)


def test_the_default_path_is_unity_with_a_delay_and_a_quiet_noise() -> None:
    played = tone(1000)
    heard = hear(quiet(), played, SR)
    assert heard.dtype == np.float32
    np.testing.assert_allclose(heard, played, atol=1e-6)

    path = AcousticPath()
    heard = hear(path, played, SR)
    delay = round(path.distance_delay_ms * SR / 1000)
    assert len(heard) == len(played) + delay
    assert np.std(heard[:delay]) == pytest.approx(10 ** (-75 / 20), rel=0.2)


def test_dead_horns_and_horn_gains_change_the_level_by_their_share() -> None:
    played = tone(1000)
    one_dead = hear(quiet(dead_horns=(2,)), played, SR)
    assert 20 * np.log10(np.max(np.abs(one_dead)) / 0.1) == pytest.approx(-2.5, abs=0.01)
    all_dead = hear(quiet(dead_horns=(0, 1, 2, 3)), played, SR)
    assert not all_dead.any()
    mixed = hear(quiet(horns=(-6.0, 0.0), mic_gain_db=-10), played, SR)
    expected = 0.1 * (10 ** (-6 / 20) + 1) / 2 * 10 ** (-10 / 20)
    assert np.max(np.abs(mixed)) == pytest.approx(expected, rel=1e-3)


def test_the_delay_shifts_the_sound_by_whole_samples() -> None:
    played = tone(1000)
    heard = hear(AcousticPath(noise_dbfs=None, distance_delay_ms=250.0), played, SR)
    assert len(heard) == len(played) + 12_000
    assert not heard[:12_000].any()
    np.testing.assert_allclose(heard[12_000:], played, atol=1e-6)


def test_clipping_caps_the_peaks_and_adds_odd_harmonics() -> None:
    played = tone(500)
    heard = hear(quiet(clip_at=0.05), played, SR)
    assert np.max(np.abs(heard)) == pytest.approx(0.05, rel=1e-5)
    assert amplitude_at(heard, 1500) > 0.005  # a clipped sine grows a strong third harmonic
    clean = hear(quiet(), played, SR)
    assert amplitude_at(clean, 1500) < 1e-6


def test_band_loss_takes_the_highs_off_and_leaves_the_lows() -> None:
    path = quiet(band_loss_above_hz=2000.0, band_loss_db=20.0)
    low, high = hear(path, tone(500), SR), hear(path, tone(6000), SR)
    assert amplitude_at(low, 500) == pytest.approx(0.1, rel=1e-3)
    assert 20 * np.log10(amplitude_at(high, 6000) / 0.1) == pytest.approx(-20.0, abs=0.1)


def test_noise_has_its_level_and_follows_its_seed() -> None:
    silence = np.zeros(SR)
    a = hear(AcousticPath(noise_dbfs=-40.0, seed=3), silence, SR)
    b = hear(AcousticPath(noise_dbfs=-40.0, seed=3), silence, SR)
    c = hear(AcousticPath(noise_dbfs=-40.0, seed=4), silence, SR)
    assert 20 * np.log10(np.std(a)) == pytest.approx(-40.0, abs=0.2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_the_json_form_reads_back() -> None:
    path = AcousticPath(
        horns=(0.0, -3.0, 1.5),
        dead_horns=(1,),
        band_loss_above_hz=2500.0,
        band_loss_db=18.0,
        noise_dbfs=-60.0,
        clip_at=0.2,
        distance_delay_ms=120.0,
        mic_gain_db=6.0,
        seed=9,
    )
    assert AcousticPath.from_dict(json.loads(json.dumps(path.to_dict()))) == path
    assert AcousticPath.from_dict({}) == AcousticPath()
    assert AcousticPath.from_dict({"noise_dbfs": None, "horns": [0, 0]}).noise_dbfs is None


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"horn": [0.0]}, "unknown keys in the acoustic path: horn"),
        ({"horns": []}, "horns: between 1 and 16"),
        ({"horns": [0.0] * 17}, "horns: between 1 and 16"),
        ({"horns": [0.0, 99.0]}, "horns[1]: must be between -60 and 20"),
        ({"horns": "0,0"}, "horns: a list"),
        ({"horns": [0.0, "loud"]}, "horns[1]: a number"),
        ({"dead_horns": [4]}, "dead_horns: no horn 4"),
        ({"dead_horns": [1, 1]}, "listed twice"),
        ({"dead_horns": [0.5]}, "dead_horns[0]: a whole number"),
        ({"band_loss_above_hz": 10.0}, "band_loss_above_hz: must be between 50 and 20000"),
        ({"band_loss_db": -3.0}, "band_loss_db: must be between 0 and 80"),
        ({"noise_dbfs": 6.0}, "noise_dbfs: must be between -140 and 0"),
        ({"noise_dbfs": float("nan")}, "noise_dbfs: must be between"),
        ({"clip_at": 0.0}, "clip_at: must be between"),
        ({"clip_at": 2.0}, "clip_at: must be between"),
        ({"distance_delay_ms": 5000.0}, "distance_delay_ms: must be between 0 and 1000"),
        ({"mic_gain_db": True}, "mic_gain_db: a number, got bool"),
        ({"mic_gain_db": "6"}, "mic_gain_db: a number, got str"),
        ({"seed": -1}, "seed: must be between"),
        ([1, 2], "a JSON object"),
    ],
)
def test_bad_json_says_which_field(data: object, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        AcousticPath.from_dict(data)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("played", "rate", "says"),
    [
        (np.array([0.0, np.nan]), SR, "NaN"),
        (np.zeros((100, 2)), SR, "1-D float"),
        (np.zeros(100, dtype=np.int16), SR, "1-D float"),
        (np.zeros(100), 4000, "sample_rate"),
    ],
)
def test_hear_refuses_what_is_not_mono_float_audio(
    played: NDArray[np.floating], rate: int, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        hear(AcousticPath(), played, rate)
