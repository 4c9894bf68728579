"""The publisher's cheaper Opus setting keeps what live audio is measured by: timing, level."""

from __future__ import annotations

import time

import numpy as np
import pytest

from audio.opus import OpusDecoder, OpusEncoder
from audio.pcm import FRAME_SAMPLES, Pcm
from audio.signals import find_markers, make_marker, marker_track
from server.live.publisher import OPUS_COMPLEXITY, OPUS_LOOKAHEAD_S

MARKERS_S = (0.3, 1.1, 1.9)


def _round_trip(source: Pcm, complexity: int | None) -> tuple[Pcm, float]:
    """Decoded audio and the encoder's process time per frame."""
    enc, dec = OpusEncoder(complexity=complexity), OpusDecoder()
    frames = [source[i : i + FRAME_SAMPLES] for i in range(0, len(source), FRAME_SAMPLES)]
    t0 = time.process_time()
    packets = [enc.encode(f) for f in frames]
    spent = (time.process_time() - t0) / len(frames)
    return np.concatenate([dec.decode(p) for p in packets]), spent


@pytest.mark.parametrize("complexity", [OPUS_COMPLEXITY, None])
def test_markers_come_through_at_the_same_place_as_with_libopus_default(
    complexity: int | None,
) -> None:
    marker = make_marker(seed=11)
    source = marker_track(duration_s=2.4, marker_times_s=MARKERS_S, marker=marker)
    decoded, _ = _round_trip(source, complexity)
    found = find_markers(decoded, marker, threshold=0.6)
    lookahead = OPUS_LOOKAHEAD_S * 48_000
    assert len(found) == len(MARKERS_S)
    for at, want in zip(found, MARKERS_S, strict=True):
        # Where the publisher's stamps say it is, within 0.05 ms.
        assert abs(at - lookahead - want * 48_000) < 2.4


def test_the_publishers_complexity_is_cheaper_than_the_default() -> None:
    rng = np.random.default_rng(3)
    speechlike = (rng.standard_normal(48_000) * 3000).astype(np.int16)
    cheap = min(_round_trip(speechlike, OPUS_COMPLEXITY)[1] for _ in range(3))
    default = min(_round_trip(speechlike, None)[1] for _ in range(3))
    assert cheap < default * 0.8  # measured about a third on the bench machine
