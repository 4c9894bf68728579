"""Find out what an uploaded file is, and refuse it in plain words if it is not usable audio."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from audio._ffmpeg import QUIET, compile_args, ffprobe_json, file_url, run_chain, timeout_for
from audio.errors import EmptyFile, NoAudioStream, TooLong, UnreadableAudio

# Seconds decoded from the start to prove the audio track really decodes.
DECODE_CHECK_S = 5.0
DECODE_CHECK_RATE = 8000
# ffprobe "formats" that are text or pictures, not media, whatever the file is named.
TEXT_FORMATS = frozenset({"tty", "bin", "xbin", "adf", "idf"})
IMAGE_FORMATS = frozenset({"image2", "gif", "apng", "ico", "jpegxl_anim", "webp"})
# The scan sees when the last packet starts; it lasts at most this (FLAC: ~0.2 s).
LAST_PACKET_MAX_S = 0.25
# When the header alone says the file is this much over the limit, skip the scan.
CLEARLY_TOO_LONG = 1.5


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What a file holds: container, first audio track, real duration, and any video."""

    format_name: str
    codec: str
    duration_s: float
    sample_rate: int
    channels: int
    has_video: bool
    bit_rate: int | None
    size_bytes: int


def probe(path: Path, *, max_duration_s: float | None = None) -> AudioInfo:
    """Probe and test-decode `path`; raise an AudioError subclass if it is not usable audio."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableAudio("The file could not be found.")
    size = path.stat().st_size
    if size == 0:
        raise EmptyFile()
    found = ffprobe_json(path)
    if found is None:
        raise UnreadableAudio()
    fmt: dict[str, Any] = found.get("format") or {}
    streams: list[dict[str, Any]] = found.get("streams") or []
    format_name = str(fmt.get("format_name", ""))
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    videos = [s for s in streams if s.get("codec_type") == "video" and not _is_cover_art(s)]
    if not audio:
        raise _explain_missing_audio(format_name, videos)
    stream = audio[0]
    sample_rate = _to_int(stream.get("sample_rate"))
    channels = _to_int(stream.get("channels"))
    if not sample_rate or not channels:
        raise UnreadableAudio(detail=f"audio stream without rate/channels in {format_name}")
    header_s = _to_float(fmt.get("duration")) or _to_float(stream.get("duration"))
    if max_duration_s is not None and header_s and header_s > max_duration_s * CLEARLY_TOO_LONG:
        raise TooLong(duration_s=header_s, limit_s=max_duration_s)
    duration_s = _real_duration(path, header_s=header_s)
    if max_duration_s is not None and duration_s > max_duration_s:
        raise TooLong(duration_s=duration_s, limit_s=max_duration_s)
    return AudioInfo(
        format_name=format_name,
        codec=str(stream.get("codec_name", "unknown")),
        duration_s=duration_s,
        sample_rate=sample_rate,
        channels=channels,
        has_video=bool(videos),
        bit_rate=_to_int(fmt.get("bit_rate")) or _to_int(stream.get("bit_rate")),
        size_bytes=size,
    )


def _real_duration(path: Path, *, header_s: float | None) -> float:
    """The duration the audio really has, proven by decoding and reading every packet.

    Headers lie for truncated or damaged files (a cut MP3 keeps its full-length header), so
    one ffmpeg run decodes the first seconds (garbage that ffprobe half-accepts decodes to
    nothing) and copies every packet to nowhere without decoding (fast) to find where the
    audio really stops.
    """
    decoded = 0

    def count(chunk: bytes) -> None:
        nonlocal decoded
        decoded += len(chunk)

    track = ffmpeg.input(file_url(path))["a:0"]
    start = track.output("pipe:", format="s16le", ac=1, ar=DECODE_CHECK_RATE, t=DECODE_CHECK_S)
    packets = track.output("-", format="null", acodec="copy")
    with tempfile.TemporaryDirectory(prefix="loa-probe-") as work:
        progress = Path(work) / "progress"
        args = compile_args(
            ffmpeg.merge_outputs(start, packets), *QUIET, "-nostats", "-progress", str(progress)
        )
        result = run_chain([args], timeout_s=timeout_for(header_s), sink=count)
        progress_text = progress.read_text("ascii", "replace") if progress.exists() else ""
    decoded_s = decoded / 2 / DECODE_CHECK_RATE
    if decoded_s <= 0:
        raise UnreadableAudio(detail=result.detail or "no samples decoded")
    last_start = _last_packet_time(progress_text)
    ends = max(last_start, decoded_s)
    if header_s is not None and ends <= header_s <= ends + LAST_PACKET_MAX_S:
        return header_s  # the header agrees with the packets and also counts the last one
    whole_file_decoded = decoded_s < DECODE_CHECK_S - 0.5
    if whole_file_decoded and last_start <= decoded_s + LAST_PACKET_MAX_S:
        return decoded_s  # exact: every sample was decoded
    return ends


def _last_packet_time(progress: str) -> float:
    """The latest out_time in ffmpeg's -progress output, in seconds."""
    last_us = 0
    for line in progress.splitlines():
        key, _, value = line.partition("=")
        if key == "out_time_us" and value.strip().isdigit():
            last_us = max(last_us, int(value))
    return last_us / 1_000_000


def _explain_missing_audio(
    format_name: str, videos: list[dict[str, Any]]
) -> UnreadableAudio | NoAudioStream:
    """Choose the plainest explanation for a file without an audio track."""
    names = set(format_name.split(","))
    if names & TEXT_FORMATS:
        return UnreadableAudio()
    if names & IMAGE_FORMATS or format_name.endswith("_pipe"):
        return UnreadableAudio("The file is a picture, not audio.")
    if videos:
        return NoAudioStream("The video has no audio track.")
    return NoAudioStream()


def _is_cover_art(stream: dict[str, Any]) -> bool:
    """True for the picture an MP3/M4A carries as album art (not a real video track)."""
    disposition = stream.get("disposition") or {}
    return bool(disposition.get("attached_pic"))


def _to_int(value: object) -> int | None:
    try:
        number = int(str(value))
    except ValueError:
        return None
    return number if number > 0 else None


def _to_float(value: object) -> float | None:
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if number > 0 and number == number and number != float("inf") else None
