"""Decoding real files (made by ffmpeg here) into 48 kHz mono s16, whole or streamed."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from audio.decode import decode_to_pcm, iter_pcm_frames
from audio.errors import EmptyFile, NoAudioStream, UnreadableAudio
from audio.pcm import SAMPLE_RATE
from tests.audio_rt.helpers import dominant_frequency, ffmpeg_generate


def test_a_stereo_44k_mp3_becomes_48k_mono(tmp_path: Path) -> None:
    path = ffmpeg_generate(
        tmp_path / "tone.mp3", "-f", "lavfi", "-i", "sine=frequency=1000:duration=2",
        "-ac", "2", "-ar", "44100",
    )  # fmt: skip
    pcm = decode_to_pcm(path)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(len(pcm) - 2 * SAMPLE_RATE) <= 0.03 * SAMPLE_RATE  # mp3 padding only
    assert dominant_frequency(pcm[SAMPLE_RATE // 2 : SAMPLE_RATE]) == pytest.approx(1000, abs=3)


def test_streamed_frames_equal_the_whole_decode(tmp_path: Path) -> None:
    path = ffmpeg_generate(
        tmp_path / "noise.ogg", "-f", "lavfi", "-i", "anoisesrc=duration=1.234:seed=7",
        "-ar", "22050", "-c:a", "libvorbis",
    )  # fmt: skip
    whole = decode_to_pcm(path)
    frames = list(iter_pcm_frames(path, 960))
    assert all(len(f) == 960 for f in frames)
    joined = np.concatenate(frames)
    np.testing.assert_array_equal(joined[: len(whole)], whole)
    assert not joined[len(whole) :].any()  # the padding is silence
    assert len(joined) - len(whole) < 960
    tail = list(iter_pcm_frames(path, 960, pad_last=False))
    assert sum(len(f) for f in tail) == len(whole)


def test_streaming_an_hour_long_file_does_not_hold_it_in_memory(tmp_path: Path) -> None:
    # Ten minutes at 48 kHz would be 58 MB decoded; a low-rate MP3 of it is made in a second.
    path = ffmpeg_generate(
        tmp_path / "long.mp3", "-f", "lavfi", "-i", "sine=frequency=440:duration=600",
        "-ar", "8000", "-b:a", "8k",
    )  # fmt: skip
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_pcm_frames(path, 960))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == pytest.approx(600 * 50, abs=5)
    assert peak < 5_000_000


def test_unusable_files_raise_plain_audio_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"this is not audio at all\n" * 40)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    video = ffmpeg_generate(
        tmp_path / "video.mp4", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x64"
    )
    cases = [
        (garbage, UnreadableAudio),
        (empty, EmptyFile),
        (video, NoAudioStream),
        (tmp_path / "missing.wav", UnreadableAudio),
    ]
    for path, error in cases:
        with pytest.raises(error) as caught:
            decode_to_pcm(path)
        message = str(caught.value)
        assert "Errno" not in message and "Traceback" not in message
        with pytest.raises(error):
            next(iter_pcm_frames(path))
