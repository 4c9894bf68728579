"""Decode any audio file FFmpeg reads into 48 kHz mono s16 samples, whole or frame by frame."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import av
import av.error
import numpy as np

from audio.errors import AudioError, EmptyFile, NoAudioStream, UnreadableAudio
from audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm, silence

# PyAV's own exception types, caught so callers only ever see an AudioError.
_DECODE_FAILURES = (av.error.FFmpegError, ValueError, OSError)


def decode_to_pcm(path: str | os.PathLike[str]) -> Pcm:
    """Decode the first audio track of `path` to one 48 kHz mono int16 array."""
    chunks = list(_iter_resampled(Path(path)))
    return np.concatenate(chunks) if chunks else silence(0)


def iter_pcm_frames(
    path: str | os.PathLike[str], frame_samples: int = FRAME_SAMPLES, *, pad_last: bool = True
) -> Iterator[Pcm]:
    """Yield frames of `frame_samples` while decoding, holding only about one frame in memory.

    The last frame is padded with silence to full length unless `pad_last` is False.
    """
    if frame_samples <= 0:
        raise ValueError("frame_samples must be positive")
    pending = silence(0)
    for chunk in _iter_resampled(Path(path)):
        pending = np.concatenate([pending, chunk]) if len(pending) else chunk
        whole = len(pending) - len(pending) % frame_samples
        for start in range(0, whole, frame_samples):
            yield pending[start : start + frame_samples].copy()
        pending = pending[whole:]
    if len(pending):
        yield (
            np.concatenate([pending, silence(frame_samples - len(pending))])
            if pad_last
            else (pending.copy())
        )


def _iter_resampled(path: Path) -> Iterator[Pcm]:
    """Decoded, resampled chunks as FFmpeg produces them; errors become AudioError."""
    if not path.is_file():
        raise UnreadableAudio(f"The audio file {path.name} could not be found.")
    if path.stat().st_size == 0:
        raise EmptyFile()
    try:
        container = av.open(str(path))
    except _DECODE_FAILURES as exc:
        raise UnreadableAudio(detail=f"{path}: {exc}") from exc
    with container:
        if not container.streams.audio:
            raise NoAudioStream(detail=str(path))
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        produced = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    produced += out.samples
                    yield _samples_of(out)
            for out in resampler.resample(None):
                produced += out.samples
                yield _samples_of(out)
        except AudioError:
            raise
        except _DECODE_FAILURES as exc:
            raise UnreadableAudio(
                "The audio file is damaged: decoding stopped part way through.",
                detail=f"{path}: {exc}",
            ) from exc
        if produced == 0:
            raise UnreadableAudio(
                "The file contains no decodable audio.", detail=f"{path}: 0 samples"
            )


def _samples_of(frame: av.AudioFrame) -> Pcm:
    """The int16 mono samples of one resampled frame."""
    return np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1)
