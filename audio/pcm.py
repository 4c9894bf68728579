"""Helpers for the real-time format, 48 kHz mono signed 16-bit little-endian PCM, and its files."""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
from numpy.typing import NDArray

from audio.errors import AudioError

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
BYTES_PER_SAMPLE = 2

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


def duration_s(n_samples: int, sample_rate: int = SAMPLE_RATE) -> float:
    """Seconds that `n_samples` last at `sample_rate`."""
    return n_samples / sample_rate


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


class ProgressiveWav:
    """A mono 16-bit WAV written as audio comes; sizes are patched every second and on close.

    A crash therefore leaves a valid WAV holding all but the last second or so.
    """

    _HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
    _MAX_DATA = 0xFFFFFFFF - 36  # RIFF sizes are 32-bit: about 12 h 25 min of 48 kHz mono

    def __init__(self, path: Path, sample_rate: int) -> None:
        self._file = path.open("wb")
        self._rate = sample_rate
        self._data_bytes = 0
        self._unpatched = 0
        self._write_header()

    def append(self, data: bytes) -> None:
        """Append s16le bytes."""
        if self._data_bytes + len(data) > self._MAX_DATA:
            raise AudioError(
                "The recording is full (a WAV file holds about 12 hours); start a new one."
            )
        self._file.write(data)
        self._data_bytes += len(data)
        self._unpatched += len(data)
        if self._unpatched >= self._rate * 2:  # about once a second
            self._write_header()

    def _write_header(self) -> None:
        self._file.seek(0)
        self._file.write(
            self._HEADER.pack(
                b"RIFF", 36 + self._data_bytes, b"WAVE", b"fmt ", 16, 1, 1,
                self._rate, self._rate * 2, 2, 16, b"data", self._data_bytes,
            )
        )  # fmt: skip
        self._file.seek(0, os.SEEK_END)
        self._file.flush()
        self._unpatched = 0

    def close(self) -> None:
        """Write the final sizes and close; safe to repeat."""
        if not self._file.closed:
            self._write_header()
            self._file.close()


class RawPcmOutput:
    """Raw s16le to a file or a FIFO; a FIFO never blocks: no reader or a slow one drops data."""

    _MAX_PENDING = SAMPLE_RATE * 2  # one second of audio

    def __init__(self, path: Path) -> None:
        self._path = path
        self._is_fifo = path.exists() and stat.S_ISFIFO(path.stat().st_mode)
        self._fd: int | None = None
        self._pending = bytearray()
        self.dropped_bytes = 0
        if not self._is_fifo:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write(self, data: bytes) -> None:
        """Hand bytes on without ever blocking; what cannot be written is counted as dropped."""
        if self._fd is None and self._is_fifo:
            try:  # non-blocking open fails with ENXIO while nobody reads the FIFO
                self._fd = os.open(self._path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                self.dropped_bytes += len(data)
                return
        assert self._fd is not None
        self._pending += data
        try:
            written = os.write(self._fd, self._pending)
        except BlockingIOError:
            written = 0
        except BrokenPipeError:  # the reader went away; wait for the next one
            self.dropped_bytes += len(self._pending)
            self._pending.clear()
            os.close(self._fd)
            self._fd = None
            return
        del self._pending[:written]
        excess = len(self._pending) - self._MAX_PENDING
        if excess > 0:
            excess += excess % 2  # drop whole samples to keep the byte stream aligned
            del self._pending[:excess]
            self.dropped_bytes += excess

    def close(self) -> None:
        """Close the file or FIFO; safe to repeat."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
