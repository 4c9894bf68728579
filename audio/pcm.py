"""Helpers for the real-time format, 48 kHz mono signed 16-bit little-endian PCM, and its files.

The numbers and the files are `audio.pcmformat`'s (numpy-free), re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import numpy as np
from numpy.typing import NDArray

from audio.pcmformat import (
    BYTES_PER_SAMPLE,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    ProgressiveWav,
    RawPcmOutput,
    duration_s,
)

Pcm = NDArray[np.int16]
"""One channel of 16-bit samples at SAMPLE_RATE."""

_INT16_MIN = -32768
_INT16_MAX = 32767


def silence(n_samples: int) -> Pcm:
    """Return `n_samples` of digital silence."""
    if n_samples < 0:
        raise ValueError(f"a length of audio cannot be negative ({n_samples} samples)")
    return np.zeros(n_samples, dtype=np.int16)


def as_pcm(samples: object) -> Pcm:
    """Check that `samples` is a 1-D int16 array and return it (no copy)."""
    if not isinstance(samples, np.ndarray) or samples.dtype != np.int16 or samples.ndim != 1:
        kind = (
            f"{samples.dtype} array of shape {samples.shape}"
            if isinstance(samples, np.ndarray)
            else type(samples).__name__
        )
        raise TypeError(f"audio must be a 1-D numpy int16 array, got {kind}")
    return samples


def to_bytes(pcm: Pcm) -> bytes:
    """Encode samples as s16le bytes (little-endian whatever the machine)."""
    return as_pcm(pcm).astype("<i2", copy=False).tobytes()


def from_bytes(data: bytes | bytearray | memoryview) -> Pcm:
    """Decode s16le bytes into samples; an odd byte count is an error, not a silent cut."""
    if len(data) % BYTES_PER_SAMPLE:
        raise ValueError(f"s16le audio needs an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def clip_to_int16(samples: NDArray[np.floating] | NDArray[np.integer]) -> Pcm:
    """Round and clip any numeric samples into int16 (no wrap-around on overflow)."""
    return cast(Pcm, np.clip(np.rint(samples), _INT16_MIN, _INT16_MAX).astype(np.int16))


def apply_gain_db(pcm: Pcm, gain_db: float) -> Pcm:
    """Scale by `gain_db` decibels; peaks that would overflow are clipped, never wrapped."""
    factor = 10.0 ** (gain_db / 20.0)
    return clip_to_int16(as_pcm(pcm).astype(np.float64) * factor)


def fade_in(pcm: Pcm, n_samples: int) -> Pcm:
    """Return a copy whose first `n_samples` rise linearly from silence."""
    out = as_pcm(pcm).astype(np.float64)
    n = min(max(n_samples, 0), len(out))
    out[:n] *= np.arange(n) / max(n, 1)
    return clip_to_int16(out)


def fade_out(pcm: Pcm, n_samples: int) -> Pcm:
    """Return a copy whose last `n_samples` fall linearly to silence."""
    out = as_pcm(pcm).astype(np.float64)
    n = min(max(n_samples, 0), len(out))
    if n:
        out[len(out) - n :] *= np.arange(n, 0, -1) / n - 1.0 / n
    return clip_to_int16(out)


def peak_dbfs(pcm: Pcm) -> float:
    """Highest absolute sample in dB relative to full scale (-inf for silence)."""
    peak = int(np.max(np.abs(as_pcm(pcm).astype(np.int32)))) if len(pcm) else 0
    return float("-inf") if peak == 0 else 20.0 * float(np.log10(peak / 32768.0))


def rms_dbfs(pcm: Pcm) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for silence)."""
    if not len(pcm):
        return float("-inf")
    rms = float(np.sqrt(np.mean(as_pcm(pcm).astype(np.float64) ** 2)))
    return float("-inf") if rms == 0 else 20.0 * float(np.log10(rms / 32768.0))


def split_frames(
    pcm: Pcm, frame_samples: int = FRAME_SAMPLES, *, pad_last: bool = True
) -> Iterator[Pcm]:
    """Yield consecutive frames; the last one is padded with silence unless `pad_last` is off."""
    pcm = as_pcm(pcm)
    for start in range(0, len(pcm), frame_samples):
        frame = pcm[start : start + frame_samples]
        if len(frame) < frame_samples and pad_last:
            frame = np.concatenate([frame, silence(frame_samples - len(frame))])
        yield frame


__all__ = [
    "BYTES_PER_SAMPLE",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "Pcm",
    "ProgressiveWav",
    "RawPcmOutput",
    "apply_gain_db",
    "as_pcm",
    "clip_to_int16",
    "duration_s",
    "fade_in",
    "fade_out",
    "from_bytes",
    "peak_dbfs",
    "rms_dbfs",
    "silence",
    "split_frames",
    "to_bytes",
]
