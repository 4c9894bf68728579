"""Audio core: probe, normalise, measure, draw, chime, speak and compose announcements."""

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
