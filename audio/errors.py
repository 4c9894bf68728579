"""Audio errors whose message an operator can read and act on."""

from __future__ import annotations


class AudioError(Exception):
    """An audio problem explained in plain words; `detail` keeps tool output for the logs."""

    code = "audio_error"

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class UnreadableAudio(AudioError):
    """The file is not audio FFmpeg can decode (damaged, not audio, or garbage)."""

    code = "unreadable"

    def __init__(
        self,
        message: str = (
            "The file could not be read as audio: it may be damaged or not an audio file."
        ),
        *,
        detail: str = "",
    ) -> None:
        super().__init__(message, detail=detail)


class EmptyFile(UnreadableAudio):
    """The file has no bytes at all."""

    code = "empty"

    def __init__(self, *, detail: str = "") -> None:
        super().__init__("The file is empty.", detail=detail)


class NoAudioStream(AudioError):
    """The file is a readable media file without an audio track."""

    code = "no_audio"

    def __init__(self, message: str = "The file has no audio track.", *, detail: str = "") -> None:
        super().__init__(message, detail=detail)


class TooLong(AudioError):
    """The audio lasts longer than the allowed limit."""

    code = "too_long"

    def __init__(self, *, duration_s: float, limit_s: float) -> None:
        self.duration_s = duration_s
        self.limit_s = limit_s
        super().__init__(
            f"The audio is {format_duration(duration_s)} long; "
            f"the limit is {format_duration(limit_s)}."
        )


class ProcessingFailed(AudioError):
    """FFmpeg failed or timed out while converting audio that looked valid."""

    code = "processing_failed"


class TtsError(AudioError):
    """Text-to-speech could not produce audio (engine missing, bad voice, empty text)."""

    code = "tts"


def format_duration(seconds: float) -> str:
    """Say a duration the way people do: '3 h 12 min', '45 s', '1 h 0 min 30 s'."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        parts = [f"{hours} h"]
        if minutes or secs:
            parts.append(f"{minutes} min")
        if secs:
            parts.append(f"{secs} s")
        return " ".join(parts)
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    if total == 0 and seconds > 0:
        return f"{seconds:.1f} s"
    return f"{secs} s"
