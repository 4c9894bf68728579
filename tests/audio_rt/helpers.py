"""Helpers for the real-time audio tests: running coroutines, sinks under test, real files."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from audio.clock import Clock
from audio.pcm import SAMPLE_RATE, Pcm
from audio.sinks import AlsaSink, ClockedFileSink, NullSink, PacedSink

T = TypeVar("T")
SINK_KINDS = ["file", "null", "alsa"]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on a fresh event loop."""
    return asyncio.run(coro)


def make_sink(kind: str, clock: Clock, tmp_path: Path, **options: Any) -> PacedSink:
    """One sink of each kind, all with the same buffer: 100 ms, periods of 20 ms."""
    if kind == "file":
        return ClockedFileSink(
            tmp_path / "out.wav", tmp_path / "timing.jsonl", clock, period_frames=960, **options
        )
    if kind == "null":
        return NullSink(clock, **options)
    if kind == "alsa":
        if shutil.which("aplay") is None:
            pytest.fail("aplay is missing: apt-get install alsa-utils (make test installs it)")
        return AlsaSink("null", clock=clock, **options)
    raise ValueError(kind)


def tone(n_samples: int, *, freq: float = 440.0, amplitude: int = 8000) -> Pcm:
    """A sine of `n_samples` at 48 kHz."""
    t = np.arange(n_samples) / SAMPLE_RATE
    return (np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)


def dominant_frequency(pcm: Pcm) -> float:
    """Frequency of the strongest FFT bin (Hz)."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])


def ffmpeg_generate(path: Path, *args: str) -> Path:
    """Create a real media file with ffmpeg (lavfi sources), failing the test if it cannot."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is missing (make test installs it)")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, str(path)],
        check=True,
        timeout=120,
    )
    return path
