"""The project's own announcement chime: a soft three-note bell, synthesised (no samples)."""

from __future__ import annotations

import os
import secrets
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

# A falling C-major triad, G5 E5 C5: the familiar public-address "ding-dong-dong".
NOTES_HZ = (783.99, 659.25, 523.25)
NOTE_STARTS_S = (0.0, 0.45, 0.9)
DURATION_S = 2.4
PEAK = 10 ** (-3 / 20)  # -3 dBFS: clear headroom, never clips
ATTACK_S = 0.008  # long enough not to click, short enough to sound like a strike
FADE_OUT_S = 0.25
DECAY_PER_S = 2.2  # amplitude falls by e^-2.2 per second: rings, then gets out of the way
# Bell-ish partials (ratio to the note, relative level): a warm fundamental, a soft octave,
# a faint twelfth; nothing inharmonic enough to sound like an alarm.
PARTIALS = ((1.0, 1.0), (2.0, 0.28), (3.0, 0.08))


def chime_samples(*, sample_rate: int = 48000) -> npt.NDArray[np.float64]:
    """The chime as mono float samples in [-PEAK, PEAK]."""
    if sample_rate < 8000:
        raise ValueError("sample_rate must be at least 8000 Hz")
    t = np.arange(int(DURATION_S * sample_rate)) / sample_rate
    out = np.zeros_like(t)
    for freq, start in zip(NOTES_HZ, NOTE_STARTS_S, strict=True):
        local = t - start
        sounding = local >= 0
        note = np.zeros_like(t)
        for ratio, level in PARTIALS:
            partial_hz = freq * ratio
            if partial_hz >= sample_rate / 2:
                continue  # above Nyquist it would alias into a wrong note
            # Higher partials die faster, as in a real bell.
            decay = np.exp(-DECAY_PER_S * ratio * local[sounding])
            note[sounding] += level * decay * np.sin(2 * np.pi * partial_hz * local[sounding])
        attack = np.clip(local / ATTACK_S, 0.0, 1.0)
        out += note * (0.5 - 0.5 * np.cos(np.pi * attack))  # raised-cosine attack
    fade_len = int(FADE_OUT_S * sample_rate)
    out[-fade_len:] *= 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, fade_len))
    scaled: npt.NDArray[np.float64] = out * (PEAK / float(np.max(np.abs(out))))
    return scaled


def write_chime(path: Path, *, sample_rate: int = 48000) -> None:
    """Write the chime as a 16-bit mono WAV (temp file beside `path`, then rename)."""
    path = Path(path)
    pcm = np.round(chime_samples(sample_rate=sample_rate) * 32767).astype("<i2")
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
    try:
        with wave.open(str(tmp), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            wav.writeframes(pcm.tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
