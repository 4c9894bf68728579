"""Assemble an announcement (chime, clips, spoken text, pauses) into one WAV with pydub.

pydub keeps every part in memory (48 kHz mono 16-bit: about 5.8 MB a minute), which is
fine for announcements; MAX_COMPOSED_S keeps it that way. The caller normalises the WAV
like any upload, so here parts are only levelled against each other.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import ffmpeg
import numpy as np

from audio._ffmpeg import QUIET, compile_args, file_url, run_chain, timeout_for
from audio.chime import chime_samples
from audio.errors import AudioError, TooLong, TtsError, UnreadableAudio
from audio.probe import probe
from audio.tts import TtsEngine

SAMPLE_RATE = 48000
MAX_COMPOSED_S = 20 * 60.0
MAX_SILENCE_MS = 60_000
# Parts are levelled by RMS so a quiet recording does not follow a loud chime; the chime
# sits a little under the voice, as a signal before the message rather than the message.
VOICE_RMS_DBFS = -20.0
CHIME_RMS_DBFS = -23.0
HEADROOM_DBFS = -1.0  # levelling never pushes a sample peak above this


@dataclass(frozen=True, slots=True)
class ChimePart:
    """The project's announcement chime."""

    kind: ClassVar[str] = "chime"


@dataclass(frozen=True, slots=True)
class ClipPart:
    """An existing audio file (any format FFmpeg reads)."""

    kind: ClassVar[str] = "clip"
    path: Path


@dataclass(frozen=True, slots=True)
class TextPart:
    """Text read aloud by the TTS engine."""

    kind: ClassVar[str] = "text"
    text: str
    voice: str = "vi"


@dataclass(frozen=True, slots=True)
class SilencePart:
    """A pause."""

    kind: ClassVar[str] = "silence"
    ms: int


# The tagged union compose() takes; `kind` names each member (isinstance works too).
Part = ChimePart | ClipPart | TextPart | SilencePart


def compose(
    *,
    parts: Sequence[Part],
    dst: Path,
    work_dir: Path,
    tts: TtsEngine | None,
    max_duration_s: float = MAX_COMPOSED_S,
) -> None:
    """Join the parts in order into a 48 kHz mono 16-bit WAV at dst (atomic write)."""
    if not parts:
        raise AudioError("The announcement has no parts.")
    dst, work_dir = Path(dst), Path(work_dir)
    segments = []
    total_ms = 0
    for part in parts:
        segment = _render(part, work_dir=work_dir, tts=tts)
        total_ms += len(segment)
        if total_ms > max_duration_s * 1000:
            raise TooLong(duration_s=total_ms / 1000, limit_s=max_duration_s)
        segments.append(segment)
    # One join instead of `a + b + c`, which would copy the growing result for every part.
    joined = _segment(b"".join(s.raw_data for s in segments))
    tmp = dst.parent / f".{dst.name}.{secrets.token_hex(4)}.part"
    try:
        joined.export(str(tmp), format="wav")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _render(part: Part, *, work_dir: Path, tts: TtsEngine | None) -> Any:
    """One part as a 48 kHz mono 16-bit pydub segment, levelled."""
    if isinstance(part, ChimePart):
        pcm = np.round(chime_samples(sample_rate=SAMPLE_RATE) * 32767).astype("<i2")
        return _level(_segment(pcm.tobytes()), CHIME_RMS_DBFS)
    if isinstance(part, SilencePart):
        if not 1 <= part.ms <= MAX_SILENCE_MS:
            raise AudioError(f"A pause must last between 1 ms and {MAX_SILENCE_MS // 1000} s.")
        return _segment(bytes(2 * (part.ms * SAMPLE_RATE // 1000)))
    if isinstance(part, ClipPart):
        return _level(_decode(Path(part.path)), VOICE_RMS_DBFS)
    if tts is None:
        raise TtsError("Text-to-speech is not available on this server.")
    speech = work_dir / f".tts-{secrets.token_hex(6)}.wav"
    try:
        tts.synthesize(text=part.text, voice=part.voice, dst=speech)
        return _level(_decode(speech), VOICE_RMS_DBFS)
    finally:
        speech.unlink(missing_ok=True)


def _decode(path: Path) -> Any:
    """Decode any audio file to a pydub segment through ffmpeg (with a timeout)."""
    info = probe(path)  # plain-words errors for missing, empty or non-audio files
    raw = bytearray()
    spec = ffmpeg.input(file_url(path))["a:0"].output("pipe:", format="s16le", ac=1, ar=SAMPLE_RATE)
    result = run_chain(
        [compile_args(spec, *QUIET)], timeout_s=timeout_for(info.duration_s), sink=raw.extend
    )
    if not raw:
        raise UnreadableAudio(detail=result.detail)
    return _segment(bytes(raw[: len(raw) - len(raw) % 2]))


def _segment(raw: bytes) -> Any:
    """48 kHz mono 16-bit samples as a pydub segment."""
    # Imported here: pydub pulls in audioop and looks for ffmpeg on import, and the edge
    # agent imports this package without ever composing.
    from pydub import AudioSegment

    return AudioSegment(data=raw, sample_width=2, frame_rate=SAMPLE_RATE, channels=1)


def _level(segment: Any, target_dbfs: float) -> Any:
    """Bring the RMS level to target_dbfs, as far as the peak headroom allows."""
    if segment.rms == 0:
        return segment  # silence stays silence
    gain = min(target_dbfs - segment.dBFS, HEADROOM_DBFS - segment.max_dBFS)
    return segment.apply_gain(gain)
