"""Waveform overview (min/max pairs) for drawing, computed while decoding."""

from __future__ import annotations

from pathlib import Path

import ffmpeg
import numpy as np
import numpy.typing as npt

from audio._ffmpeg import QUIET, compile_args, file_url, run_chain, timeout_for
from audio.errors import UnreadableAudio

# 8 kHz int16 mono is plenty for a picture and keeps an hour at 57.6 MB of stream, never held.
PEAK_RATE = 8000
FULL_SCALE = 32768.0

Int16Array = npt.NDArray[np.int16]


def waveform_peaks(
    path: Path, *, count: int = 1000, timeout_s: float | None = None
) -> list[tuple[float, float]]:
    """`count` (min, max) pairs in [-1, 1] across the first audio track, oldest first.

    Fewer pairs come back only when the audio has fewer than `count` samples at 8 kHz.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    overview = _Overview(count)
    spec = ffmpeg.input(file_url(Path(path)))["a:0"].output(
        "pipe:", format="s16le", ac=1, ar=PEAK_RATE
    )
    result = run_chain(
        [compile_args(spec, *QUIET)],
        timeout_s=timeout_s if timeout_s is not None else timeout_for(None),
        sink=overview.feed,
    )
    pairs = overview.finish()
    if not pairs:
        raise UnreadableAudio(detail=result.detail)
    return pairs


class _Overview:
    """Min/max of fixed-size blocks; the block size doubles whenever there are too many.

    Memory stays around 4*count blocks whatever the length, and no duration is needed
    up front (headers of damaged files lie about it).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.limit = 4 * max(count, 1)
        self.block = 1  # samples per block
        self.mins: Int16Array = np.empty(0, dtype=np.int16)
        self.maxs: Int16Array = np.empty(0, dtype=np.int16)
        # The block being filled: its min, max and how many samples it holds so far.
        self.partial_min = 0
        self.partial_max = 0
        self.partial_fill = 0
        self.odd_byte = b""

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of s16le audio (chunks may split a sample)."""
        data = self.odd_byte + chunk
        usable = len(data) - len(data) % 2
        self.odd_byte = data[usable:]
        samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
        if self.partial_fill:
            need = self.block - self.partial_fill
            head, samples = samples[:need], samples[need:]
            if head.size:
                self._add_to_partial(int(head.min()), int(head.max()), head.size)
            if self.partial_fill == self.block:
                self._append(np.array([self.partial_min]), np.array([self.partial_max]))
                self.partial_fill = 0
        full = samples.size // self.block * self.block
        if full:
            blocks = samples[:full].reshape(-1, self.block)
            self._append(blocks.min(axis=1), blocks.max(axis=1))
        rest = samples[full:]
        if rest.size:
            self._add_to_partial(int(rest.min()), int(rest.max()), rest.size)
        while self.mins.size >= 2 * self.limit:
            self._halve()

    def finish(self) -> list[tuple[float, float]]:
        """The `count` pairs, scaled to [-1, 1]."""
        mins, maxs = self.mins, self.maxs
        if self.partial_fill:
            mins = np.append(mins, np.int16(self.partial_min))
            maxs = np.append(maxs, np.int16(self.partial_max))
        if mins.size == 0:
            return []
        buckets = min(self.count, mins.size)
        starts = (np.arange(buckets) * mins.size) // buckets
        low = np.minimum.reduceat(mins, starts) / FULL_SCALE
        high = np.maximum.reduceat(maxs, starts) / FULL_SCALE
        return [(round(float(a), 4), round(float(b), 4)) for a, b in zip(low, high, strict=True)]

    def _add_to_partial(self, low: int, high: int, size: int) -> None:
        if self.partial_fill == 0:
            self.partial_min, self.partial_max = low, high
        else:
            self.partial_min = min(self.partial_min, low)
            self.partial_max = max(self.partial_max, high)
        self.partial_fill += size

    def _append(self, mins: npt.NDArray[np.integer], maxs: npt.NDArray[np.integer]) -> None:
        self.mins = np.concatenate([self.mins, mins.astype(np.int16)])
        self.maxs = np.concatenate([self.maxs, maxs.astype(np.int16)])

    def _halve(self) -> None:
        """Merge neighbouring blocks pairwise; an unpaired last block joins the partial one."""
        if self.mins.size % 2:
            last_min, last_max = int(self.mins[-1]), int(self.maxs[-1])
            self.mins, self.maxs = self.mins[:-1], self.maxs[:-1]
            if self.partial_fill:
                last_min = min(last_min, self.partial_min)
                last_max = max(last_max, self.partial_max)
            # The partial block now holds the unpaired block's samples and its own (< 2x).
            self.partial_min, self.partial_max = last_min, last_max
            self.partial_fill += self.block
        self.mins = np.minimum(self.mins[0::2], self.mins[1::2])
        self.maxs = np.maximum(self.maxs[0::2], self.maxs[1::2])
        self.block *= 2
