"""The real-time format's numbers and its files, without numpy.

48 kHz mono signed 16-bit little-endian PCM. An idle edge agent needs these (its sink is
made at start) but not numpy, which loads with the first audio; `audio.pcm` re-exports
them with the numpy helpers.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

from audio.errors import AudioError

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
BYTES_PER_SAMPLE = 2


def duration_s(n_samples: int, sample_rate: int = SAMPLE_RATE) -> float:
    """Seconds that `n_samples` last at `sample_rate`."""
    return n_samples / sample_rate


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
