"""PCM helpers: bytes, gain without wrap-around, fades, framing."""

from __future__ import annotations

import numpy as np
import pytest

from audio.pcm import (
    apply_gain_db,
    as_pcm,
    fade_in,
    fade_out,
    from_bytes,
    peak_dbfs,
    rms_dbfs,
    silence,
    split_frames,
    to_bytes,
)
from tests.audio_rt.helpers import tone


def test_bytes_round_trip_is_little_endian() -> None:
    pcm = np.array([1, -2, 32767, -32768], dtype=np.int16)
    data = to_bytes(pcm)
    assert data == b"\x01\x00\xfe\xff\xff\x7f\x00\x80"
    np.testing.assert_array_equal(from_bytes(data), pcm)
    with pytest.raises(ValueError, match="even number"):
        from_bytes(b"\x00\x01\x02")


def test_gain_scales_and_clips_instead_of_wrapping() -> None:
    pcm = tone(4800, amplitude=10000)
    assert rms_dbfs(apply_gain_db(pcm, -6.0)) == pytest.approx(rms_dbfs(pcm) - 6.0, abs=0.05)
    loud = apply_gain_db(pcm, 20.0)
    assert loud.max() == 32767 and loud.min() == -32768
    # Clipped, so the sign of every sample is kept (wrap-around would flip some).
    assert np.all(np.sign(loud) == np.sign(pcm))
    assert peak_dbfs(silence(10)) == float("-inf")


def test_fades_start_and_end_in_silence() -> None:
    pcm = np.full(1000, 20000, dtype=np.int16)
    faded_in, faded_out = fade_in(pcm, 100), fade_out(pcm, 100)
    assert faded_in[0] == 0 and faded_in[50] == 10000 and faded_in[100] == 20000
    assert faded_out[-1] == 0 and faded_out[899] == 20000
    assert np.all(np.diff(faded_out[900:].astype(int)) <= 0)


def test_split_frames_pads_the_last_frame_only_when_asked() -> None:
    frames = list(split_frames(tone(2500), 960))
    assert [len(f) for f in frames] == [960, 960, 960]
    assert not frames[-1][580:].any()
    assert [len(f) for f in split_frames(tone(2500), 960, pad_last=False)] == [960, 960, 580]


def test_only_mono_int16_is_accepted() -> None:
    with pytest.raises(TypeError, match="int16"):
        as_pcm(np.zeros((2, 10), dtype=np.int16))
    with pytest.raises(TypeError, match="int16"):
        as_pcm([1, 2, 3])
    with pytest.raises(ValueError):
        silence(-1)
