"""measure_loudness(): ebur128 numbers against signals whose loudness is known by definition."""

from __future__ import annotations

from pathlib import Path

import pytest

from audio import ProcessingFailed, UnreadableAudio, measure_loudness
from audio.loudness import parse_ebur128_summary
from tests.audio.conftest import ffmpeg


def _sine(tmp_path: Path, *, channels: int = 1) -> Path:
    """6 s of 997 Hz peaking at exactly -20 dBFS; stereo means two identical channels."""
    path = tmp_path / f"sine_{channels}.wav"
    layout = "mono|c0=c0" if channels == 1 else "stereo|c0=c0|c1=c0"
    ffmpeg(
        *("-f", "lavfi", "-i", "aevalsrc=0.1*sin(2*PI*997*t):s=48000:d=6"),
        *("-af", f"pan={layout}", "-c:a", "pcm_f32le", str(path)),
    )
    return path


def test_sine_matches_bs1770_reference(tmp_path: Path) -> None:
    # BS.1770: a full-scale 997 Hz sine in one channel reads -3.01 LUFS, so peaking at
    # -20 dBFS it reads -23.0 LUFS, and its true peak is -20 dBTP.
    loudness = measure_loudness(_sine(tmp_path))
    assert loudness.integrated_lufs == pytest.approx(-23.0, abs=0.2)
    assert loudness.true_peak_dbtp == pytest.approx(-20.0, abs=0.2)
    assert loudness.lra == pytest.approx(0.0, abs=0.2)
    assert loudness.threshold_lufs == pytest.approx(-33.0, abs=0.2)  # relative gate: -10 LU
    assert not loudness.is_silent


def test_two_identical_channels_are_three_db_louder(tmp_path: Path) -> None:
    mono = measure_loudness(_sine(tmp_path))
    stereo = measure_loudness(_sine(tmp_path, channels=2))
    assert stereo.integrated_lufs - mono.integrated_lufs == pytest.approx(3.0, abs=0.2)
    assert stereo.true_peak_dbtp == pytest.approx(mono.true_peak_dbtp, abs=0.1)


def test_silence(silence_wav: Path) -> None:
    loudness = measure_loudness(silence_wav)
    assert loudness.is_silent
    assert loudness.integrated_lufs == -70.0
    assert loudness.true_peak_dbtp == float("-inf")


def test_not_audio(random_bytes: Path) -> None:
    with pytest.raises(UnreadableAudio):
        measure_loudness(random_bytes)


def test_missing_summary_is_a_plain_error() -> None:
    with pytest.raises(ProcessingFailed, match="could not be measured"):
        parse_ebur128_summary("ffmpeg printed something else entirely")
