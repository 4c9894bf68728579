"""EBU R128 loudness measured with FFmpeg's ebur128 filter (independent of loudnorm)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from audio._ffmpeg import INFO, compile_args, file_url, run_chain, timeout_for
from audio.errors import ProcessingFailed, UnreadableAudio

# ebur128 reports -70 LUFS (its absolute gate) when no block is loud enough to count.
SILENCE_LUFS = -70.0
# framelog=verbose: no per-100 ms lines at "info" level, only the final summary.
EBUR128 = {"peak": "true", "framelog": "verbose"}

_NUMBER = r"([-+]?(?:\d+(?:\.\d+)?|inf|nan))"
_INTEGRATED = re.compile(
    r"Integrated loudness:\s*I:\s*" + _NUMBER + r"\s*LUFS\s*Threshold:\s*" + _NUMBER, re.IGNORECASE
)
_RANGE = re.compile(r"Loudness range:\s*LRA:\s*" + _NUMBER, re.IGNORECASE)
_PEAK = re.compile(r"True peak:\s*Peak:\s*" + _NUMBER, re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Loudness:
    """Integrated loudness (LUFS), true peak (dBTP), loudness range (LU), gate threshold."""

    integrated_lufs: float
    true_peak_dbtp: float
    lra: float
    threshold_lufs: float = SILENCE_LUFS

    @property
    def is_silent(self) -> bool:
        """True when nothing rose above the -70 LUFS absolute gate (digital silence or hiss)."""
        return not math.isfinite(self.integrated_lufs) or self.integrated_lufs <= SILENCE_LUFS


def measure_loudness(path: Path, *, timeout_s: float | None = None) -> Loudness:
    """Measure the first audio track of `path` with ebur128 (true peak on)."""
    spec = (
        ffmpeg.input(file_url(Path(path)))["a:0"]
        .filter("ebur128", **EBUR128)
        .output("-", format="null")
    )
    result = run_chain([compile_args(spec, *INFO)], timeout_s=timeout_s or timeout_for(None))
    if not result.ok:
        raise UnreadableAudio(detail=result.detail)
    return parse_ebur128_summary(result.stderrs[-1])


def ebur128_from_pipe_args(
    *, input_format: str, sample_rate: int | None = None, true_peak: bool = True
) -> list[str]:
    """An ffmpeg command that measures audio arriving on stdin and prints the summary.

    Without true_peak the measurement is about twice as fast and reports NaN for the peak.
    """
    options: dict[str, object] = {"format": input_format}
    if sample_rate is not None:
        options.update(ar=sample_rate, ac=1)
    measure = {**EBUR128, "peak": "true" if true_peak else "none"}
    spec = ffmpeg.input("pipe:", **options).filter("ebur128", **measure).output("-", format="null")
    return compile_args(spec, *INFO)


def parse_ebur128_summary(stderr: str) -> Loudness:
    """Read the final 'Summary:' block ebur128 writes to stderr (peak NaN if not measured)."""
    _, found, summary = stderr.rpartition("Summary:")
    integrated = _INTEGRATED.search(summary) if found else None
    loudness_range = _RANGE.search(summary) if found else None
    peak = _PEAK.search(summary) if found else None
    if integrated is None or loudness_range is None:
        raise ProcessingFailed(
            "The loudness of the audio could not be measured.", detail=stderr[-800:]
        )
    return Loudness(
        integrated_lufs=float(integrated.group(1)),
        true_peak_dbtp=float(peak.group(1)) if peak else math.nan,
        lra=float(loudness_range.group(1)),
        threshold_lufs=float(integrated.group(2)),
    )
