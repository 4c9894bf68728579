"""waveform_peaks(): a faithful overview, computed while streaming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audio import UnreadableAudio, waveform_peaks
from audio.peaks import _Overview
from tests.audio.conftest import ffmpeg


@pytest.fixture(scope="module")
def silence_then_tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of silence, then 2 s of a 300 Hz sine peaking at 0.5 (stereo, 44.1 kHz)."""
    path = tmp_path_factory.mktemp("peaks") / "half.wav"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=44100:cl=stereo:d=2",
        "-f",
        "lavfi",
        "-i",
        "sine=f=300:r=44100:d=2",
        "-filter_complex",
        "[1:a]volume=12.04dB,pan=stereo|c0=c0|c1=c0[t];[0:a][t]concat=n=2:v=0:a=1",
        "-c:a",
        "pcm_s16le",
        str(path),
    )
    return path


def test_overview_follows_the_signal(silence_then_tone: Path) -> None:
    peaks = waveform_peaks(silence_then_tone, count=100)
    assert len(peaks) == 100
    assert all(-1.0 <= low <= high <= 1.0 for low, high in peaks)
    for low, high in peaks[:48]:
        assert abs(low) < 0.01 and abs(high) < 0.01
    for low, high in peaks[52:]:
        assert low == pytest.approx(-0.5, abs=0.03)
        assert high == pytest.approx(0.5, abs=0.03)


def test_default_count_and_any_format(mp3_with_cover: Path, mp4_video: Path) -> None:
    assert len(waveform_peaks(mp3_with_cover)) == 1000
    assert len(waveform_peaks(mp4_video, count=50)) == 50


def test_fewer_samples_than_pairs(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=f=100:r=8000:d=0.02", str(tiny))  # 160 samples
    assert len(waveform_peaks(tiny, count=1000)) == 160


def test_memory_stays_bounded_however_long_the_audio() -> None:
    overview = _Overview(count=100)
    rng = np.random.default_rng(3)
    signal = rng.integers(-30000, 30000, size=2_000_003, dtype=np.int16)
    raw = signal.astype("<i2").tobytes()
    for start in range(0, len(raw), 65_537):  # odd chunk size: samples split across chunks
        overview.feed(raw[start : start + 65_537])
        assert overview.mins.size < 2 * overview.limit
    pairs = overview.finish()
    assert len(pairs) == 100
    assert min(p[0] for p in pairs) == pytest.approx(signal.min() / 32768, abs=1e-4)
    assert max(p[1] for p in pairs) == pytest.approx(signal.max() / 32768, abs=1e-4)
    # Each pair covers its share of the signal: compare with the exact bucket extremes.
    exact_high = [chunk.max() / 32768 for chunk in np.array_split(signal, 100)]
    assert np.mean([abs(p[1] - e) for p, e in zip(pairs, exact_high, strict=True)]) < 0.01


def test_not_audio(text_as_mp3: Path) -> None:
    with pytest.raises(UnreadableAudio):
        waveform_peaks(text_as_mp3)


def test_count_must_be_positive(silence_then_tone: Path) -> None:
    with pytest.raises(ValueError):
        waveform_peaks(silence_then_tone, count=0)
