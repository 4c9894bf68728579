"""Short and sparse clips land on the target, or on a stated fallback and never quieter."""

from __future__ import annotations

from pathlib import Path

import pytest

from audio import measure_loudness, normalize, probe
from audio.normalize import ACCEPT_LU

TARGET = -16.0
CEILING = -1.5
CODEC_PEAK_SLACK_DB = 1.0


@pytest.mark.parametrize(
    "fixture",
    [
        "short_word_m4a",
        "short_phrase_m4a",
        "chime_then_phrase",
        "short_quiet_tone",
        "short_loud_tone",
        "word_in_silence",
        "beep_in_silence",
    ],
)
def test_short_and_sparse_clips_land_on_target(
    request: pytest.FixtureRequest, tmp_path: Path, fixture: str
) -> None:
    src: Path = request.getfixturevalue(fixture)
    assert probe(src).duration_s >= 0.5
    dst = tmp_path / "out.opus"
    result = normalize(src=src, dst=dst)
    measured = measure_loudness(dst)
    assert measured.integrated_lufs == pytest.approx(TARGET, abs=ACCEPT_LU), result
    assert measured.true_peak_dbtp <= CEILING + CODEC_PEAK_SLACK_DB, result
    assert result.mode not in ("peak", "silent")


def test_unreachable_target_falls_back_to_peak_gain_and_is_louder(
    tmp_path: Path, sparse_clicks: Path
) -> None:
    dst = tmp_path / "out.opus"
    result = normalize(src=sparse_clicks, dst=dst)
    measured = measure_loudness(dst)
    assert result.mode == "peak"  # the stated fallback
    assert measured.integrated_lufs > result.before.integrated_lufs + 3.0
    assert measured.integrated_lufs < TARGET


def test_gated_away_clip_is_kept_as_it_was(tmp_path: Path, gated_tone: Path) -> None:
    dst = tmp_path / "out.opus"
    result = normalize(src=gated_tone, dst=dst)
    assert result.mode == "silent"
    assert result.gain_db == 0.0
    assert measure_loudness(dst).is_silent
