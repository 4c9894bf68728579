"""Text-to-speech engines behind one small interface: espeak-ng (always) and Piper (optional)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from audio.errors import TtsError


class TtsEngine(Protocol):
    """Something that reads text aloud into a WAV file."""

    name: str

    def voices(self) -> list[str]:
        """Voice names `synthesize` accepts."""
        ...

    def synthesize(self, *, text: str, voice: str, dst: Path) -> None:
        """Speak `text` with `voice` into the WAV file `dst` (replaced atomically)."""
        ...


class EspeakEngine:
    """espeak-ng: robotic but always available, with Northern, Central and Southern voices."""

    name = "espeak-ng"

    def __init__(
        self,
        *,
        binary: str = "espeak-ng",
        language: str = "vi",
        words_per_minute: int = 150,
        timeout_s: float = 60.0,
    ) -> None:
        self.binary = binary
        self.language = language
        # Announcements are listened to outdoors through horns: a little slower than default.
        self.words_per_minute = words_per_minute
        self.timeout_s = timeout_s
        self._voices: list[str] | None = None

    def voices(self) -> list[str]:
        """The installed voices of `language` (for 'vi': vi, vi-vn-x-central, vi-vn-x-south)."""
        if self._voices is None:
            listing = _run(
                [self.binary, f"--voices={self.language}"],
                stdin=b"",
                timeout_s=self.timeout_s,
                program="espeak-ng",
            )
            self._voices = _parse_espeak_voices(listing.decode("utf-8", "replace"))
        return list(self._voices)

    def synthesize(self, *, text: str, voice: str, dst: Path) -> None:
        """Speak UTF-8 `text` (sent on stdin, so it is never read as options) into dst."""
        spoken = _check_text(text)
        _check_voice(voice, self.voices())
        args = [self.binary, "-v", voice, "-s", str(self.words_per_minute), "-b", "1"]
        with _atomic_wav(Path(dst)) as tmp:
            _run(
                [*args, "-w", str(tmp), "--stdin"],
                stdin=spoken.encode("utf-8"),
                timeout_s=_timeout_for(spoken, self.timeout_s),
                program="espeak-ng",
            )


class PiperEngine:
    """Piper neural TTS with one voice model (a .onnx file with its .onnx.json beside it)."""

    name = "piper"

    def __init__(
        self,
        model_path: Path,
        *,
        binary: str = "piper",
        speaker: int | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.model_path = Path(model_path)
        self.binary = binary
        self.speaker = speaker
        self.timeout_s = timeout_s

    def voices(self) -> list[str]:
        """The model's name, e.g. 'vi_VN-vais1000-medium'."""
        return [self.model_path.name.removesuffix(".onnx")]

    def synthesize(self, *, text: str, voice: str, dst: Path) -> None:
        """Speak `text` with the model; `voice` is its name or its language ('vi', 'vi_VN')."""
        spoken = _check_text(text)
        if voice not in self._accepted_voice_names():
            _check_voice(voice, self.voices())
        if not self.model_path.is_file():
            raise TtsError(f"The Piper voice model {self.model_path.name} was not found.")
        config = self.model_path.with_name(self.model_path.name + ".json")
        if not config.is_file():
            raise TtsError(f"The Piper voice model {self.model_path.name} has no {config.name}.")
        if shutil.which(self.binary) is None:
            raise TtsError("The Piper text-to-speech program is not installed.")
        args = [self.binary, "--model", str(self.model_path), "--config", str(config)]
        if self.speaker is not None:
            args += ["--speaker", str(self.speaker)]
        with _atomic_wav(Path(dst)) as tmp:
            _run(
                [*args, "--output_file", str(tmp)],
                # Piper reads one utterance per line; one line keeps the file in one piece.
                stdin=(" ".join(spoken.split()) + "\n").encode("utf-8"),
                timeout_s=_timeout_for(spoken, self.timeout_s),
                program="Piper",
            )

    def _accepted_voice_names(self) -> set[str]:
        name = self.voices()[0]
        language = name.split("-", 1)[0]  # "vi_VN"
        return {name, language, language.split("_", 1)[0], language.replace("_", "-").lower()}


def _check_text(text: str) -> str:
    spoken = text.strip()
    if not spoken:
        raise TtsError("There is no text to read aloud.")
    return spoken


def _check_voice(voice: str, available: list[str]) -> None:
    if voice not in available:
        raise TtsError(
            f"The voice {voice!r} is not available; choose one of: {', '.join(available)}."
        )


def _timeout_for(text: str, base_s: float) -> float:
    # Synthesis runs far faster than speech; this only stops a hung process.
    return base_s + len(text) / 20


def _run(args: list[str], *, stdin: bytes, timeout_s: float, program: str) -> bytes:
    """Run a TTS program; plain-words TtsError when it is missing, hangs or fails."""
    try:
        done = subprocess.run(
            args, input=stdin, capture_output=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError:
        raise TtsError(f"The {program} text-to-speech program is not installed.") from None
    except subprocess.TimeoutExpired:
        raise TtsError(f"{program} took too long to read the text and was stopped.") from None
    if done.returncode != 0:
        raise TtsError(
            f"{program} could not read the text aloud.",
            detail=done.stderr.decode("utf-8", "replace")[-800:],
        )
    return done.stdout


def _parse_espeak_voices(listing: str) -> list[str]:
    """The Language column of `espeak-ng --voices=xx` (the names -v accepts)."""
    names = []
    for line in listing.splitlines()[1:]:  # first line is the header
        columns = line.split()
        if len(columns) >= 2:
            names.append(columns[1])
    return names


@contextlib.contextmanager
def _atomic_wav(dst: Path) -> Iterator[Path]:
    """Yield a temp path beside dst; on success check it holds real audio and rename it."""
    tmp = dst.parent / f".{dst.name}.{secrets.token_hex(4)}.part"
    try:
        yield tmp
        if _wav_frames(tmp) == 0:
            raise TtsError("The text produced no speech.")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _wav_frames(path: Path) -> int:
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes()
    except (OSError, EOFError, wave.Error):
        raise TtsError("The speech program wrote no usable audio.") from None
