"""Marker tracks for end-to-end sync tests: write one as a file, compare devices' recordings."""

from __future__ import annotations

import hashlib
import subprocess
import wave
from pathlib import Path

from audio.pcm import Pcm
from audio.signals import make_marker, marker_track
from loa_testkit.livesim import Recording, heard_times
from loa_testkit.playfix import Clip

SPACING_S = 0.5


def marker_wav(path: Path, *, count: int = 7) -> Pcm:
    """Write a WAV of `count` noise markers 0.5 s apart; return the marker."""
    marker = make_marker(duration_s=0.05)
    times = [0.25 + SPACING_S * i for i in range(count)]
    track = marker_track(duration_s=times[-1] + 0.75, marker_times_s=times, marker=marker)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(track.tobytes())
    return marker


def marker_clip(directory: Path, *, count: int = 7) -> tuple[Clip, Pcm]:
    """The marker track as an Ogg/Opus clip (as the server distributes), and the marker."""
    directory.mkdir(parents=True, exist_ok=True)
    wav, ogg = directory / "markers.wav", directory / "markers.ogg"
    marker = marker_wav(wav, count=count)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav),
         "-c:a", "libopus", "-b:a", "64k", str(ogg)],
        check=True,
    )  # fmt: skip
    data = ogg.read_bytes()
    duration = 0.25 + SPACING_S * (count - 1) + 0.75
    return Clip(data, hashlib.sha256(data).hexdigest(), duration), marker


def heard_by_device(data_dir: Path, marker: Pcm) -> list[float]:
    """Wall-clock instants a simulated agent played each marker (an underrun may lose one)."""
    sim = data_dir / "sim"
    return heard_times(Recording(sim / "output.wav", sim / "plays.jsonl"), marker)[0]


def matched_skews(heard: list[list[float]]) -> list[float]:
    """For each marker every device played: latest minus earliest instant."""
    out = []
    for t in heard[0]:
        matches = [min(h, key=lambda x: abs(x - t)) for h in heard if h]
        if len(matches) == len(heard) and all(abs(m - t) < SPACING_S / 2 for m in matches):
            out.append(max(matches) - min(matches))
    return out
