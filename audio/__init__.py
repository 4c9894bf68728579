"""Audio core: probe, normalise, measure, draw, chime, speak and compose announcements.

The names below load on first use (PEP 562), so `from audio.clock import Clock` on an edge
agent does not import ffmpeg-python, numpy or pydub with them.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audio.chime import chime_samples, write_chime
    from audio.compose import ChimePart, ClipPart, Part, SilencePart, TextPart, compose
    from audio.errors import (
        AudioError,
        EmptyFile,
        NoAudioStream,
        ProcessingFailed,
        TooLong,
        TtsError,
        UnreadableAudio,
        format_duration,
    )
    from audio.loudness import Loudness, measure_loudness
    from audio.normalize import NormalizeMode, NormalizeResult, normalize
    from audio.peaks import waveform_peaks
    from audio.probe import AudioInfo, probe
    from audio.tts import EspeakEngine, PiperEngine, TtsEngine

# Public name -> the submodule that defines it.
_HOME = {
    "chime_samples": "chime",
    "write_chime": "chime",
    "ChimePart": "compose",
    "ClipPart": "compose",
    "Part": "compose",
    "SilencePart": "compose",
    "TextPart": "compose",
    "compose": "compose",
    "AudioError": "errors",
    "EmptyFile": "errors",
    "NoAudioStream": "errors",
    "ProcessingFailed": "errors",
    "TooLong": "errors",
    "TtsError": "errors",
    "UnreadableAudio": "errors",
    "format_duration": "errors",
    "Loudness": "loudness",
    "measure_loudness": "loudness",
    "NormalizeMode": "normalize",
    "NormalizeResult": "normalize",
    "normalize": "normalize",
    "waveform_peaks": "peaks",
    "AudioInfo": "probe",
    "probe": "probe",
    "EspeakEngine": "tts",
    "PiperEngine": "tts",
    "TtsEngine": "tts",
}


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first use and keep the name here."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """`audio.probe`, `audio.compose` and `audio.normalize` stay the functions.

    Importing a submodule sets it as an attribute of the package; where a function has the
    submodule's name, the package keeps the function instead, as the eager imports did.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if _HOME.get(name) == name and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "AudioError",
    "AudioInfo",
    "ChimePart",
    "ClipPart",
    "EmptyFile",
    "EspeakEngine",
    "Loudness",
    "NoAudioStream",
    "NormalizeMode",
    "NormalizeResult",
    "Part",
    "PiperEngine",
    "ProcessingFailed",
    "SilencePart",
    "TextPart",
    "TooLong",
    "TtsEngine",
    "TtsError",
    "UnreadableAudio",
    "chime_samples",
    "compose",
    "format_duration",
    "measure_loudness",
    "normalize",
    "probe",
    "waveform_peaks",
    "write_chime",
]
