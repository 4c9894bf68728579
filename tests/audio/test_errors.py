"""Error messages an operator reads."""

from __future__ import annotations

import pytest

from audio import AudioError, EmptyFile, NoAudioStream, TooLong, UnreadableAudio, format_duration


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.4, "0.4 s"),
        (45, "45 s"),
        (60, "1 min"),
        (125.9, "2 min 5 s"),
        (3 * 3600, "3 h"),
        (3 * 3600 + 12 * 60, "3 h 12 min"),
        (3 * 3600 + 30, "3 h 0 min 30 s"),
    ],
)
def test_durations_read_naturally(seconds: float, said: str) -> None:
    assert format_duration(seconds) == said


def test_too_long_message_from_the_issue() -> None:
    error = TooLong(duration_s=3 * 3600 + 12 * 60, limit_s=3 * 3600)
    assert str(error) == "The audio is 3 h 12 min long; the limit is 3 h."
    assert error.code == "too_long"


def test_every_error_is_an_audio_error_with_a_code_and_a_log_detail() -> None:
    errors = [
        UnreadableAudio(detail="moov atom not found"),
        EmptyFile(),
        NoAudioStream(),
        TooLong(duration_s=2, limit_s=1),
    ]
    assert [e.code for e in errors] == ["unreadable", "empty", "no_audio", "too_long"]
    for error in errors:
        assert isinstance(error, AudioError)
        assert str(error) == error.message
        assert str(error).endswith(".")
    assert "moov" not in str(errors[0])
    assert errors[0].detail == "moov atom not found"
