"""Opus framing for live audio: round trip, packet sizes, concealment, garbage."""

from __future__ import annotations

import itertools

import av
import numpy as np
import pytest

from audio.opus import OpusDecoder, OpusEncoder, OpusError
from audio.pcm import FRAME_SAMPLES, rms_dbfs, split_frames
from tests.audio_rt.helpers import dominant_frequency, tone


def encode_all(pcm: np.ndarray, encoder: OpusEncoder) -> list[bytes]:
    return [encoder.encode(frame) for frame in split_frames(pcm, FRAME_SAMPLES)]


def test_round_trip_keeps_frequency_and_level() -> None:
    source = tone(48_000, freq=523.0, amplitude=10000)
    packets = encode_all(source, OpusEncoder())
    assert len(packets) == 50  # one packet per 20 ms frame
    # 32 kb/s is 80 bytes a frame on average.
    assert 40 <= sum(map(len, packets)) / len(packets) <= 120
    decoder = OpusDecoder()
    decoded = np.concatenate([decoder.decode(p) for p in packets])
    assert len(decoded) == len(source)
    steady = decoded[4800:]
    assert dominant_frequency(steady) == pytest.approx(523.0, abs=3)
    assert rms_dbfs(steady) == pytest.approx(rms_dbfs(source), abs=1.0)
    assert decoder.decoded == 50 and decoder.concealed == 0


def test_lost_packets_fade_out_then_fall_silent_and_recovery_is_smooth() -> None:
    packets = encode_all(tone(48_000, freq=300.0, amplitude=10000), OpusEncoder())
    decoder = OpusDecoder()
    for packet in packets[:10]:
        last_good = decoder.decode(packet)
    concealed = [decoder.decode(None) for _ in range(7)]
    levels = [rms_dbfs(frame) for frame in concealed]
    assert levels[0] > rms_dbfs(last_good) - 6  # the first loss is barely a dip
    assert all(a > b for a, b in itertools.pairwise(levels[:5]))  # fading
    assert not concealed[5].any() and not concealed[6].any()  # then silence
    assert all(len(frame) == FRAME_SAMPLES for frame in concealed)
    back = decoder.decode(packets[17])
    assert abs(int(back[0])) < 500  # ramped in, not a click
    assert rms_dbfs(back) > rms_dbfs(last_good) - 6
    assert decoder.concealed == 7


@pytest.mark.parametrize("seed", range(8))
def test_garbage_packets_are_concealed_never_crash(seed: int) -> None:
    rng = np.random.default_rng(seed)
    packets = encode_all(tone(9600, amplitude=8000), OpusEncoder())
    decoder = OpusDecoder()
    out = [decoder.decode(packets[0])]
    for size in (1, 3, 40, 200, 1500):
        out.append(decoder.decode(rng.integers(0, 256, size, dtype=np.uint8).tobytes()))
    out.extend(decoder.decode(p) for p in packets[1:])
    assert all(frame.dtype == np.int16 and len(frame) == FRAME_SAMPLES for frame in out)
    # Random bytes are mostly rejected (or decode as a wrong-length frame) and concealed;
    # either way the decoder keeps decoding the real packets afterwards.
    assert decoder.decoded >= len(packets)
    assert decoder.concealed == decoder.corrupt


def test_encoder_refuses_a_wrong_frame_length() -> None:
    encoder = OpusEncoder()
    with pytest.raises(OpusError, match="960 samples"):
        encoder.encode(tone(480))
    with pytest.raises(OpusError, match="cannot use frames"):
        OpusEncoder(frame_samples=1000)


def test_decoded_frames_are_libopus_samples_and_stay_valid_after_later_decodes() -> None:
    # Frames come straight from the decoder's buffers (no to_ndarray copy): each must hold
    # exactly what PyAV's own conversion gives, and keep it while later packets decode.
    rng = np.random.default_rng(3)
    source = (tone(48_000, freq=311.0, amplitude=6000) + rng.normal(0, 500, 48_000)).astype(
        np.int16
    )
    packets = encode_all(source, OpusEncoder())
    decoder = OpusDecoder()
    kept = [decoder.decode(p) for p in packets]  # all held at once
    reference = OpusDecoder._open()
    for packet, frame in zip(packets, kept, strict=True):
        (expected,) = reference.decode(av.Packet(packet))
        assert frame.dtype == np.int16 and frame.shape == (FRAME_SAMPLES,)
        np.testing.assert_array_equal(frame, expected.to_ndarray().reshape(-1))
