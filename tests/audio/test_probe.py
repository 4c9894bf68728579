"""probe(): what operators bring is recognised; what is not audio is refused in plain words."""

from __future__ import annotations

from pathlib import Path

import pytest

from audio import (
    AudioError,
    AudioInfo,
    EmptyFile,
    NoAudioStream,
    TooLong,
    UnreadableAudio,
    probe,
)
from audio._ffmpeg import ffprobe_json

SPEECH_S = 10.4  # espeak's reading of LONGER_TEXT at 150 wpm (checked against the WAV below)


@pytest.mark.parametrize(
    ("fixture", "codec", "rate", "channels", "has_video"),
    [
        ("mulaw_wav", "pcm_mulaw", 8000, 1, False),
        ("adpcm_wav", "adpcm_ms", 22050, 1, False),
        ("mp3_with_cover", "mp3", 44100, 2, False),
        ("m4a", "aac", 22050, 1, False),
        ("ogg_vorbis", "vorbis", 22050, 1, False),
        ("opus_file", "opus", 48000, 1, False),
        ("flac_file", "flac", 22050, 1, False),
        ("amr_file", "amr_nb", 8000, 1, False),
        ("mp4_video", "aac", 22050, 1, True),
    ],
)
def test_recognises_the_formats_operators_bring(
    request: pytest.FixtureRequest,
    speech_seconds: float,
    fixture: str,
    codec: str,
    rate: int,
    channels: int,
    has_video: bool,
) -> None:
    path: Path = request.getfixturevalue(fixture)
    info = probe(path)
    assert isinstance(info, AudioInfo)
    assert (info.codec, info.sample_rate, info.channels, info.has_video) == (
        codec,
        rate,
        channels,
        has_video,
    )
    expected_s = 12.0 if fixture == "mp3_with_cover" else speech_seconds
    assert info.duration_s == pytest.approx(expected_s, abs=0.15)
    assert info.size_bytes == path.stat().st_size
    assert info.format_name


def test_the_source_speech_is_as_long_as_the_tests_assume(speech_seconds: float) -> None:
    assert speech_seconds == pytest.approx(SPEECH_S, abs=0.5)


def test_cover_art_is_not_video_but_a_real_video_track_is(
    mp3_with_cover: Path, mp4_video: Path
) -> None:
    streams = ffprobe_json(mp3_with_cover)["streams"]  # type: ignore[index]
    assert any(s["codec_type"] == "video" for s in streams)  # the picture is there...
    assert probe(mp3_with_cover).has_video is False  # ...but it is album art
    assert probe(mp4_video).has_video is True


def test_amr_duration_comes_from_the_audio_not_the_header_estimate(
    amr_file: Path, speech_seconds: float
) -> None:
    header = float(ffprobe_json(amr_file)["format"]["duration"])  # type: ignore[index]
    assert abs(header - speech_seconds) > 0.2  # ffprobe guesses AMR length from the bit rate
    assert probe(amr_file).duration_s == pytest.approx(speech_seconds, abs=0.1)


def test_empty_file(empty_file: Path) -> None:
    with pytest.raises(EmptyFile, match="The file is empty"):
        probe(empty_file)


@pytest.mark.parametrize("fixture", ["random_bytes", "text_as_mp3"])
def test_things_that_are_not_audio(request: pytest.FixtureRequest, fixture: str) -> None:
    with pytest.raises(UnreadableAudio) as caught:
        probe(request.getfixturevalue(fixture))
    assert str(caught.value) == (
        "The file could not be read as audio: it may be damaged or not an audio file."
    )


def test_picture_named_wav(png_as_wav: Path) -> None:
    with pytest.raises(UnreadableAudio, match="picture, not audio"):
        probe(png_as_wav)


def test_garbage_that_ffprobe_half_accepts_is_caught_by_decoding(garbage_aac: Path) -> None:
    found = ffprobe_json(garbage_aac)
    assert found is not None
    assert [s["codec_name"] for s in found["streams"]] == ["aac"]
    assert float(found["format"]["duration"]) > 5  # ffprobe alone would accept it
    with pytest.raises(UnreadableAudio) as caught:
        probe(garbage_aac)
    assert caught.value.detail  # ffmpeg's words are kept for the log...
    assert "aac" not in str(caught.value).lower()  # ...not shown to the operator


def test_truncated_mp3_is_accepted_with_its_real_length(
    full_mp3: Path, truncated_mp3: Path
) -> None:
    header = float(ffprobe_json(truncated_mp3)["format"]["duration"])  # type: ignore[index]
    assert header == pytest.approx(20.0, abs=0.2)  # the header still claims the full length
    info = probe(truncated_mp3)
    assert info.duration_s == pytest.approx(10.0, abs=0.6)
    assert probe(full_mp3).duration_s == pytest.approx(20.0, abs=0.1)


def test_video_without_audio(video_without_audio: Path) -> None:
    with pytest.raises(NoAudioStream, match="no audio track"):
        probe(video_without_audio)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableAudio, match="could not be found"):
        probe(tmp_path / "nothing.mp3")


def test_duration_limit(speech_wav: Path) -> None:
    assert probe(speech_wav, max_duration_s=60).duration_s < 60
    with pytest.raises(TooLong) as caught:
        probe(speech_wav, max_duration_s=5)
    error = caught.value
    assert error.limit_s == 5
    assert error.duration_s == pytest.approx(SPEECH_S, abs=0.5)
    assert str(error) == "The audio is 10 s long; the limit is 5 s."
    assert isinstance(error, AudioError)
