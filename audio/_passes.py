"""Building blocks of the normalisation passes: targets and the mono 48 kHz decoder command."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from audio._ffmpeg import INFO, QUIET, compile_args, file_url, run_chain
from audio.errors import ProcessingFailed
from audio.loudness import ebur128_from_pipe_args, parse_ebur128_summary

SAMPLE_RATE = 48000

# (filter name, options) in order, as ffmpeg-python's .filter() takes them.
Filters = list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Targets:
    """What the clip must reach: loudness, true-peak ceiling, loudness range, Opus bitrate."""

    target_lufs: float
    true_peak_db: float
    lra: float
    bitrate: int


def decode_mono(
    src: Path,
    filters: Filters,
    *,
    discard: bool = False,
    windows: Sequence[tuple[float, float]] | None = None,
) -> list[str]:
    """ffmpeg: first audio track -> 48 kHz mono float -> filters -> raw float on stdout.

    `windows` ((start_s, length_s), ...) decodes only those stretches, joined. `discard`
    throws the audio away (the filters only measure and print at "info" level).
    """
    if windows:
        pieces = [
            ffmpeg.input(file_url(src), ss=start, t=length)["a:0"] for start, length in windows
        ]
        stream = ffmpeg.concat(*pieces, v=0, a=1)
    else:
        stream = ffmpeg.input(file_url(src))["a:0"]
    stream = stream.filter("aresample", SAMPLE_RATE).filter(
        "aformat", sample_fmts="flt", channel_layouts="mono"
    )
    for name, options in filters:
        stream = stream.filter(name, **options)
    if discard:
        return compile_args(stream.output("-", format="null"), *INFO)
    return compile_args(stream.output("pipe:", format="f32le", ar=SAMPLE_RATE, ac=1), *QUIET)


def integrated_lufs(
    src: Path,
    filters: Filters,
    *,
    timeout_s: float,
    windows: Sequence[tuple[float, float]] | None = None,
) -> float:
    """Integrated loudness after `filters`, without encoding (a cheap trial pass)."""
    measure = ebur128_from_pipe_args(input_format="f32le", sample_rate=SAMPLE_RATE, true_peak=False)
    result = run_chain([decode_mono(src, filters, windows=windows), measure], timeout_s=timeout_s)
    if not result.ok:
        raise ProcessingFailed("The audio could not be converted.", detail=result.detail)
    return parse_ebur128_summary(result.stderrs[-1]).integrated_lufs
