"""The acoustic self-test's analysis: every verdict from a fault simulated through hear()."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.typing import NDArray

from audio import selftest
from audio.acoustic import AcousticPath, hear
from audio.selftest import Figures, Result, TestSignal, analyse


@pytest.fixture(scope="module")
def signal() -> TestSignal:
    """The default test signal: 0.5 s silence, 2 s sweep at -20 dBFS, 0.5 s silence."""
    return selftest.test_signal()


@pytest.fixture(scope="module")
def baseline(signal: TestSignal) -> Figures:
    """Commissioning: a healthy cluster, recorded once."""
    first = run(signal, AcousticPath(seed=100), None)
    assert first.verdict == "baseline"
    assert first.figures is not None
    return first.figures


def run(signal: TestSignal, path: AcousticPath, baseline: Figures | None) -> Result:
    """Play the signal through `path` and analyse what the microphone heard."""
    return analyse(signal, hear(path, signal.samples, signal.sample_rate), baseline=baseline)


def figures_of(result: Result) -> Figures:
    assert result.figures is not None
    return result.figures


def test_the_test_signal_is_silence_then_a_sweep_at_its_level(signal: TestSignal) -> None:
    assert signal.samples.dtype == np.float32
    assert signal.samples.ndim == 1
    assert len(signal.samples) == 3 * 48_000
    lead = round(selftest.LEAD_S * 48_000)
    assert not signal.samples[:lead].any()
    assert not signal.samples[-round(selftest.TAIL_S * 48_000) :].any()
    peak_dbfs = 20 * np.log10(np.max(np.abs(signal.samples)))
    assert peak_dbfs == pytest.approx(-20.0, abs=0.01)
    # The sweep starts low and ends high: count zero crossings in its first and last 50 ms.
    sweep = signal.samples[lead : lead + 96_000]
    crossings = [np.count_nonzero(np.diff(np.sign(part))) for part in (sweep[:2400], sweep[-2400:])]
    assert crossings[0] < 30 < 400 < crossings[1]
    quieter = selftest.test_signal(seconds=1.0, level_dbfs=-30.0, sample_rate=44_100)
    assert len(quieter.samples) == 2 * 44_100
    assert 20 * np.log10(np.max(np.abs(quieter.samples))) == pytest.approx(-30.0, abs=0.05)


@pytest.mark.parametrize(
    "kwargs",
    [{"seconds": 0.2}, {"seconds": 60.0}, {"level_dbfs": 0.0}, {"sample_rate": 16_000}],
)
def test_a_test_signal_out_of_range_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        selftest.test_signal(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rate", "seconds"), [(44_100, 1.0), (96_000, 1.0), (48_000, 5.0)])
def test_other_rates_and_sweep_lengths_measure_alike(rate: int, seconds: float) -> None:
    other = selftest.test_signal(sample_rate=rate, seconds=seconds)
    first = analyse(other, hear(AcousticPath(seed=1), other.samples, rate), baseline=None)
    base = figures_of(first)
    assert all(abs(band) <= 0.5 for band in base.bands_db)
    lossy = AcousticPath(band_loss_above_hz=2000.0, band_loss_db=20.0, seed=2)
    assert analyse(other, hear(lossy, other.samples, rate), baseline=base).verdict == "high_loss"
    clipped = AcousticPath(clip_at=0.05, seed=3)
    assert analyse(other, hear(clipped, other.samples, rate), baseline=base).verdict == "distorted"


def test_the_first_run_becomes_the_baseline(signal: TestSignal) -> None:
    first = run(signal, AcousticPath(seed=5), None)
    assert first.verdict == "baseline"
    assert first.vietnamese == "lần đo đầu tiên: lưu làm mốc"
    assert first.level_vs_baseline_db is None
    assert any("lưu làm mốc" in r for r in first.reasons)
    figures = figures_of(first)
    assert figures.level_db == pytest.approx(0.0, abs=0.1)  # the default path is unity
    assert figures.noise_floor_dbfs == pytest.approx(-75.0, abs=0.5)
    assert figures.snr_db > 40


def test_a_first_run_that_hears_nothing_is_not_stored_as_the_baseline(signal: TestSignal) -> None:
    first = run(signal, AcousticPath(dead_horns=(0, 1, 2, 3), seed=6), None)
    assert first.verdict == "silent"
    assert any("Chưa lưu mốc" in r for r in first.reasons)


def test_healthy_horns_are_ok_and_flat(signal: TestSignal, baseline: Figures) -> None:
    result = run(signal, AcousticPath(seed=7), baseline)
    assert result.verdict == "ok"
    assert result.vietnamese == "bình thường"
    assert result.level_vs_baseline_db is not None
    assert abs(result.level_vs_baseline_db) <= 1.0
    figures = figures_of(result)
    for now, then in zip(figures.bands_db, baseline.bands_db, strict=True):
        assert abs(now - then) <= 1.5
    assert all(abs(band - figures.level_db) <= 1.5 for band in figures.bands_db)
    assert figures.distortion_pct < 1.0
    assert result.reasons == ()


def test_one_dead_horn_of_four_is_still_ok_but_noted(signal: TestSignal, baseline: Figures) -> None:
    result = run(signal, AcousticPath(dead_horns=(1,), seed=8), baseline)
    assert result.verdict == "ok"
    assert result.level_vs_baseline_db == pytest.approx(-2.5, abs=0.2)
    assert "Mức âm thấp hơn mốc 2,5 dB" in result.reasons


def test_two_dead_horns_of_four_are_weak(signal: TestSignal, baseline: Figures) -> None:
    result = run(signal, AcousticPath(dead_horns=(0, 3), seed=9), baseline)
    assert result.verdict == "level_low"
    assert result.vietnamese == "yếu tiếng"
    assert result.level_vs_baseline_db == pytest.approx(-6.0, abs=0.2)
    assert "Mức âm thấp hơn mốc 6 dB" in result.reasons


def test_all_horns_dead_is_silent(signal: TestSignal, baseline: Figures) -> None:
    result = run(signal, AcousticPath(dead_horns=(0, 1, 2, 3), seed=10), baseline)
    assert result.verdict == "silent"
    assert result.vietnamese == "không có âm thanh"
    assert figures_of(result).snr_db < selftest.DETECT_SNR_DB
    assert any(r.startswith("Không nghe thấy tín hiệu thử") for r in result.reasons)


def test_a_cluster_40_db_down_is_silent_too(signal: TestSignal, baseline: Figures) -> None:
    result = run(signal, AcousticPath(mic_gain_db=-40.0, seed=11), baseline)
    assert result.verdict == "silent"
    assert result.level_vs_baseline_db == pytest.approx(-40.0, abs=0.5)


def test_a_blown_high_driver_loses_the_highs(signal: TestSignal, baseline: Figures) -> None:
    path = AcousticPath(band_loss_above_hz=2000.0, band_loss_db=20.0, seed=12)
    result = run(signal, path, baseline)
    assert result.verdict == "high_loss"
    assert result.vietnamese == "mất dải cao"
    bands = dict(zip(selftest.BAND_CENTRES_HZ, figures_of(result).bands_db, strict=True))
    before = dict(zip(selftest.BAND_CENTRES_HZ, baseline.bands_db, strict=True))
    for hz in (125, 250, 500, 1000):
        assert bands[hz] - before[hz] == pytest.approx(0.0, abs=0.5)
    for hz in (4000, 8000):
        assert bands[hz] - before[hz] == pytest.approx(-20.0, abs=1.5)
    assert "Dải 4 kHz giảm 20 dB so với mốc" in result.reasons


def test_a_quieter_cluster_is_not_a_high_loss(signal: TestSignal, baseline: Figures) -> None:
    """A level drop across all bands (horns dead, mic further) must not read as lost highs."""
    result = run(signal, AcousticPath(mic_gain_db=-12.0, seed=13), baseline)
    assert result.verdict == "level_low"


@pytest.mark.parametrize("clip_at", [0.07, 0.05, 0.03])
def test_a_clipping_amplifier_is_distorted(
    signal: TestSignal, baseline: Figures, clip_at: float
) -> None:
    """The sweep peaks at 0.1: the amplifier clips the top 30, 50, 70 % of it."""
    result = run(signal, AcousticPath(clip_at=clip_at, seed=14), baseline)
    assert result.verdict == "distorted"
    assert result.vietnamese == "méo tiếng"
    distortion = figures_of(result).distortion_pct
    assert distortion >= selftest.DISTORTION_MIN_PCT
    assert distortion > 20 * max(baseline.distortion_pct, 0.05)
    assert any(r.startswith("Độ méo ") for r in result.reasons)


@pytest.mark.parametrize("noise_dbfs", [-50.0, -30.0, -20.0])
def test_loud_noise_is_noisy(signal: TestSignal, baseline: Figures, noise_dbfs: float) -> None:
    result = run(signal, AcousticPath(noise_dbfs=noise_dbfs, seed=15), baseline)
    assert result.verdict == "noisy"
    assert result.vietnamese == "ồn nền cao"
    assert figures_of(result).noise_floor_dbfs == pytest.approx(noise_dbfs, abs=0.5)
    # The sweep is still measured through the noise: the horns themselves are fine.
    assert result.level_vs_baseline_db == pytest.approx(0.0, abs=1.0)


def test_noise_that_drowns_the_sweep_is_noisy_not_silent(
    signal: TestSignal, baseline: Figures
) -> None:
    """Nobody should climb the pole for dead horns when the noise hid a working cluster."""
    result = run(signal, AcousticPath(noise_dbfs=-6.0, seed=16), baseline)
    assert result.verdict == "noisy"
    assert any(r.startswith("Không nghe thấy tín hiệu thử") for r in result.reasons)
    assert not any(r.startswith("Độ méo") for r in result.reasons)  # noise is not distortion


@pytest.mark.parametrize("delay_ms", [0.0, 37.0, 150.0, 400.0])
def test_the_capture_latency_is_found_and_does_not_matter(
    signal: TestSignal, baseline: Figures, delay_ms: float
) -> None:
    result = run(signal, AcousticPath(distance_delay_ms=delay_ms, seed=17), baseline)
    assert result.verdict == "ok"
    figures = figures_of(result)
    assert figures.latency_ms == pytest.approx(delay_ms, abs=0.1)
    assert figures.noise_floor_dbfs == pytest.approx(baseline.noise_floor_dbfs, abs=0.5)


def test_a_longer_recording_than_needed_is_fine(signal: TestSignal, baseline: Figures) -> None:
    heard = hear(AcousticPath(distance_delay_ms=120.0, seed=18), signal.samples, 48_000)
    padded = np.concatenate([heard, heard[:12_000]])  # noise and silence after the tail
    assert len(padded) / 48_000 < signal.record_s + 0.5
    assert analyse(signal, padded, baseline=baseline).verdict == "ok"


@pytest.mark.parametrize(
    "recorded",
    [
        np.zeros(4 * 48_000, dtype=np.float32),
        np.zeros(4 * 48_000, dtype=np.int16),
        np.full(4 * 48_000, 0.25, dtype=np.float64),  # a stuck DC level
    ],
)
def test_a_microphone_that_gives_nothing_is_said_so(
    signal: TestSignal, baseline: Figures, recorded: NDArray[np.generic]
) -> None:
    for base in (baseline, None):
        result = analyse(signal, recorded, baseline=base)
        assert result.verdict == "no_signal_input"
        assert result.vietnamese == "micro không thu được tín hiệu"
        assert result.figures is None
        assert result.level_vs_baseline_db is None
        assert result.reasons


def test_int16_capture_reads_like_float(signal: TestSignal, baseline: Figures) -> None:
    heard = hear(AcousticPath(dead_horns=(2,), seed=19), signal.samples, 48_000)
    pcm = np.round(heard * 32768).astype(np.int16)
    result = analyse(signal, pcm, baseline=baseline)
    assert result.verdict == "ok"
    assert result.level_vs_baseline_db == pytest.approx(-2.5, abs=0.2)


def _healthy(n: int = 4 * 48_000) -> NDArray[np.float64]:
    return np.random.default_rng(0).standard_normal(n) * 0.01


@pytest.mark.parametrize(
    ("recorded", "says"),
    [
        (np.where(np.arange(4 * 48_000) == 5000, np.nan, _healthy()), "NaN or infinity"),
        (np.where(np.arange(4 * 48_000) == 9, np.inf, _healthy()), "NaN or infinity"),
        (np.array([], dtype=np.float32), "empty"),
        (np.stack([_healthy(), _healthy()], axis=1), r"mono \(1-D\), got shape \(192000, 2\)"),
        (_healthy().astype(np.complex128), "not complex128"),
        ((_healthy() * 100).astype(np.uint8), "not uint8"),
        (_healthy() * 1e6, "not audio scaled"),
        (_healthy(2 * 48_000), "too short: 2.00 s, needs at least 2.50 s"),
        (_healthy(20 * 48_000), "too long: 20.0 s for a 3.50 s test"),
        (list(_healthy()), "must be a numpy array, got list"),
    ],
)
def test_bad_recordings_are_a_clear_value_error(
    signal: TestSignal, baseline: Figures, recorded: object, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        analyse(signal, recorded, baseline=baseline)


def test_figures_and_results_go_through_json(signal: TestSignal, baseline: Figures) -> None:
    stored = json.loads(json.dumps(baseline.to_dict()))
    assert set(stored["bands_db"]) == {"125", "250", "500", "1000", "2000", "4000", "8000"}
    assert Figures.from_dict(stored) == baseline
    result = run(signal, AcousticPath(dead_horns=(0, 1), seed=20), Figures.from_dict(stored))
    assert result.verdict == "level_low"
    again = json.loads(json.dumps(result.to_dict()))
    assert again["verdict"] == "level_low"
    assert again["figures"]["level_db"] == figures_of(result).level_db
    silent = analyse(signal, np.zeros(4 * 48_000), baseline=None)
    assert json.loads(json.dumps(silent.to_dict()))["figures"] is None


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"level_db": None}, "level_db must be a finite number"),
        ({"snr_db": float("nan")}, "snr_db must be a finite number"),
        ({"distortion_pct": True}, "distortion_pct must be a finite number"),
        ({"bands_db": {"125": 0.0}}, "bands_db must map exactly"),
        ({"bands_db": [0.0] * 7}, "bands_db must map exactly"),
        ({"extra": 1}, "unknown keys ['extra']"),
    ],
)
def test_a_damaged_stored_baseline_is_a_value_error(
    baseline: Figures, change: dict[str, object], says: str
) -> None:
    data = {**baseline.to_dict(), **change}
    with pytest.raises(ValueError) as caught:
        Figures.from_dict(data)
    assert says in str(caught.value)
    missing = baseline.to_dict()
    del missing["noise_floor_dbfs"]
    with pytest.raises(ValueError, match="missing keys"):
        Figures.from_dict(missing)
    with pytest.raises(ValueError, match="a JSON object"):
        Figures.from_dict("baseline")
