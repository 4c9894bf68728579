"""normalize(): every kind of input lands on the target loudness, checked with ebur128."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from audio import (
    AudioError,
    Loudness,
    NormalizeResult,
    ProcessingFailed,
    UnreadableAudio,
    measure_loudness,
    normalize,
    probe,
)
from audio._gain import MAX_GAIN_DB, MAX_LIMITING_DB
from audio.normalize import plan_gain

TARGET = -16.0
CEILING = -1.5
# Opus is lossy: it may lift peaks a little above the ceiling set before encoding.
CODEC_PEAK_SLACK_DB = 1.0


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("normalised")


_DONE: dict[Path, tuple[NormalizeResult, Path]] = {}


def _normalise(src: Path, out_dir: Path, **kwargs: float) -> tuple[NormalizeResult, Path]:
    """normalize() with default targets, once per source per run (several tests look)."""
    if kwargs or src not in _DONE:
        dst = out_dir / f"{src.stem}{len(_DONE)}.opus"
        _DONE[src] = (normalize(src=src, dst=dst, **kwargs), dst)  # type: ignore[arg-type]
    return _DONE[src]


def _check_output(result: NormalizeResult, dst: Path, *, source_s: float) -> Loudness:
    """The file is 48 kHz mono Opus of the right length, and the result tells the truth."""
    info = probe(dst)
    assert (info.format_name, info.codec, info.sample_rate, info.channels) == (
        "ogg",
        "opus",
        48000,
        1,
    )
    assert info.has_video is False
    assert info.duration_s == pytest.approx(source_s, abs=0.1)
    assert result.duration_s == pytest.approx(source_s, abs=0.1)
    measured = measure_loudness(dst)  # independent of the pipeline: one plain ebur128 run
    assert result.after.integrated_lufs == pytest.approx(measured.integrated_lufs, abs=0.15)
    assert result.after.true_peak_dbtp == pytest.approx(measured.true_peak_dbtp, abs=0.15)
    assert not list(dst.parent.glob("*.part"))
    return measured


@pytest.mark.parametrize(
    "fixture",
    [
        "speech_wav",
        "speech_like_noise",
        "quiet_voice",
        "loud_clipped_voice",
        "mp3_with_cover",
        "mp4_video",
    ],
)
def test_speech_lands_within_one_lu_of_target(
    request: pytest.FixtureRequest, out_dir: Path, fixture: str
) -> None:
    src: Path = request.getfixturevalue(fixture)
    result, dst = _normalise(src, out_dir)
    measured = _check_output(result, dst, source_s=probe(src).duration_s)
    assert measured.integrated_lufs == pytest.approx(TARGET, abs=1.0)
    if "noise" not in fixture and "mp3" not in fixture:  # Opus peaks on noise: codec matter
        assert measured.true_peak_dbtp <= CEILING + CODEC_PEAK_SLACK_DB


def test_quiet_voice_is_raised_and_loud_voice_lowered(
    out_dir: Path, quiet_voice: Path, loud_clipped_voice: Path
) -> None:
    quiet, _ = _normalise(quiet_voice, out_dir)
    loud, _ = _normalise(loud_clipped_voice, out_dir)
    assert quiet.before.integrated_lufs < -50
    assert quiet.gain_db > 35
    assert loud.before.integrated_lufs > -10
    assert loud.gain_db < -5
    assert quiet.after.integrated_lufs == pytest.approx(loud.after.integrated_lufs, abs=1.0)


def test_before_is_the_loudness_of_the_source(out_dir: Path, speech_wav: Path) -> None:
    result, _ = _normalise(speech_wav, out_dir)
    source = measure_loudness(speech_wav)  # mono source: downmix changes nothing
    assert result.before.integrated_lufs == pytest.approx(source.integrated_lufs, abs=0.2)
    assert result.before.true_peak_dbtp == pytest.approx(source.true_peak_dbtp, abs=0.3)
    assert result.before.lra == pytest.approx(source.lra, abs=0.3)


def test_clipped_loud_tone(out_dir: Path, loud_clipped_tone: Path) -> None:
    result, dst = _normalise(loud_clipped_tone, out_dir)
    measured = _check_output(result, dst, source_s=8.0)
    assert result.mode == "linear"
    assert measured.integrated_lufs == pytest.approx(TARGET, abs=0.5)


def test_wide_loudness_range_goes_through_loudnorm_dynamic(
    out_dir: Path, wide_range_voice: Path
) -> None:
    result, dst = _normalise(wide_range_voice, out_dir)
    assert result.before.lra > 11
    assert result.mode == "dynamic"
    measured = _check_output(result, dst, source_s=probe(wide_range_voice).duration_s)
    assert measured.integrated_lufs == pytest.approx(TARGET, abs=1.0)
    assert measured.lra < result.before.lra  # loudnorm narrowed the range


def test_silence_is_written_without_gain(out_dir: Path, silence_wav: Path) -> None:
    result, dst = _normalise(silence_wav, out_dir)
    assert result.silent
    assert result.mode == "silent"
    assert result.gain_db == 0.0
    assert result.before.is_silent and result.after.is_silent
    assert result.after.true_peak_dbtp == float("-inf")
    assert probe(dst).duration_s == pytest.approx(6.0, abs=0.05)


def test_other_targets(out_dir: Path, speech_like_noise: Path) -> None:
    _, dst = _normalise(speech_like_noise, out_dir, target_lufs=-23.0, bitrate=16000)
    assert measure_loudness(dst).integrated_lufs == pytest.approx(-23.0, abs=1.0)
    bit_rate = probe(dst).bit_rate
    assert bit_rate is not None and bit_rate < 24000


@pytest.mark.parametrize(
    "fixture", ["empty_file", "random_bytes", "text_as_mp3", "png_as_wav", "garbage_aac"]
)
def test_bad_input_leaves_nothing_behind(
    request: pytest.FixtureRequest, tmp_path: Path, fixture: str
) -> None:
    with pytest.raises(UnreadableAudio):
        normalize(src=request.getfixturevalue(fixture), dst=tmp_path / "clip.opus")
    assert os.listdir(tmp_path) == []


def test_failure_after_writing_removes_the_temp_file(
    tmp_path: Path, loud_clipped_tone: Path
) -> None:
    dst = tmp_path / "clip.opus"
    dst.mkdir()  # the final rename cannot replace a directory
    (dst / "keep").write_text("x")
    with pytest.raises(ProcessingFailed, match="could not be saved"):
        normalize(src=loud_clipped_tone, dst=dst)
    assert sorted(os.listdir(tmp_path)) == ["clip.opus"]


def test_timeout_stops_ffmpeg_and_says_so(tmp_path: Path, speech_wav: Path) -> None:
    with pytest.raises(ProcessingFailed, match="took too long") as caught:
        normalize(src=speech_wav, dst=tmp_path / "clip.opus", timeout_s=0.001)
    assert isinstance(caught.value, AudioError)
    assert os.listdir(tmp_path) == []
    assert _ffmpeg_children() == []


def test_replaces_an_existing_clip(tmp_path: Path, loud_clipped_tone: Path) -> None:
    dst = tmp_path / "clip.opus"
    dst.write_bytes(b"old")
    normalize(src=loud_clipped_tone, dst=dst)
    assert probe(dst).codec == "opus"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_lufs": -3.0}, "target_lufs"),
        ({"true_peak_db": 1.0}, "true_peak_db"),
        ({"lra": 0.5}, "lra"),
        ({"bitrate": 1000}, "bitrate"),
    ],
)
def test_rejects_impossible_targets(
    tmp_path: Path, speech_wav: Path, kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        normalize(src=speech_wav, dst=tmp_path / "x.opus", **kwargs)  # type: ignore[arg-type]


def _loud(i: float, tp: float, lra: float = 5.0) -> Loudness:
    return Loudness(integrated_lufs=i, true_peak_dbtp=tp, lra=lra, threshold_lufs=i - 10)


@pytest.mark.parametrize(
    ("before", "mode", "gain"),
    [
        (_loud(-70.0, float("-inf"), 0.0), "silent", 0.0),
        (_loud(-26.0, -14.0), "linear", 10.0),  # peak lands at -4 dBTP
        (_loud(-20.0, -2.0), "limited", 4.0),  # peak would reach +2: limit 3.5 dB
        (_loud(-20.0, -2.0, lra=15.0), "dynamic", 4.0),  # range too wide for one gain
        (_loud(-30.0, -2.0), "dynamic", 14.0),  # would need 13.5 dB of limiting
        (_loud(-69.0, -60.0), "linear", MAX_GAIN_DB),  # a whisper is not blown up to hiss
    ],
)
def test_plan_gain(before: Loudness, mode: str, gain: float) -> None:
    plan = plan_gain(before, target_lufs=TARGET, true_peak_db=CEILING, lra=11.0)
    assert (plan.mode, plan.gain_db) == (mode, gain)


def test_limiting_threshold_is_what_the_plan_uses() -> None:
    edge = _loud(-20.0, CEILING - 4.0 + MAX_LIMITING_DB)
    assert plan_gain(edge, target_lufs=TARGET, true_peak_db=CEILING, lra=11.0).mode == "limited"
    over = _loud(-20.0, CEILING - 4.0 + MAX_LIMITING_DB + 0.1)
    assert plan_gain(over, target_lufs=TARGET, true_peak_db=CEILING, lra=11.0).mode == "dynamic"


def _ffmpeg_children() -> list[int]:
    """ffmpeg processes this test process started that are still alive."""
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = stat[stat.rindex(")") + 2 :].split()[1]
        if parent == me and name.startswith("ffmpeg"):
            found.append(int(entry))
    return found
