"""The announcement chime: our own synthesis, pleasant, and never clipping."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from audio import chime_samples, probe, write_chime
from audio.chime import NOTE_STARTS_S, NOTES_HZ


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


def test_written_chime_is_a_short_mono_wav(tmp_path: Path) -> None:
    path = tmp_path / "chime.wav"
    write_chime(path)
    info = probe(path)
    assert (info.codec, info.sample_rate, info.channels) == ("pcm_s16le", 48000, 1)
    assert 2.0 <= info.duration_s <= 3.0
    assert [p.name for p in tmp_path.iterdir()] == ["chime.wav"]
    with wave.open(str(path), "rb") as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert np.abs(pcm).max() < 32767 * 0.75  # -3 dBFS: headroom, no clipping


def test_notes_ring_in_order_with_soft_edges() -> None:
    rate = 48000
    samples = chime_samples(sample_rate=rate)
    assert np.abs(samples).max() == pytest.approx(10 ** (-3 / 20), rel=1e-6)
    assert np.abs(samples[: rate // 1000]).max() < 0.05  # raised-cosine attack, no click
    assert np.abs(samples[-rate // 100 :]).max() < 0.001  # faded out, no click at the end
    for i, start in enumerate(NOTE_STARTS_S):
        window = samples[int((start + 0.02) * rate) : int((start + 0.32) * rate)]
        assert _dominant_hz(window, rate) == pytest.approx(NOTES_HZ[i], abs=5.0)


def test_other_sample_rates(tmp_path: Path) -> None:
    path = tmp_path / "chime16k.wav"
    write_chime(path, sample_rate=16000)
    assert probe(path).sample_rate == 16000
    with pytest.raises(ValueError):
        chime_samples(sample_rate=4000)


def test_importing_the_package_writes_nothing_and_loads_no_pydub(tmp_path: Path) -> None:
    code = "import sys, audio; assert 'pydub' not in sys.modules, 'pydub imported'"
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, check=True, env={"PYTHONPATH": str(root)}
    )
    assert list(tmp_path.iterdir()) == []
