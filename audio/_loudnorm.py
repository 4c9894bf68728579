"""FFmpeg's loudnorm in its documented two-pass form (used for wide-range or very peaky input)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from audio._ffmpeg import run_chain
from audio._passes import SAMPLE_RATE, Filters, Targets, decode_mono
from audio.errors import ProcessingFailed


def first_pass(src: Path, targets: Targets, *, timeout_s: float) -> dict[str, float]:
    """loudnorm's measuring pass (print_format=json) on the mono 48 kHz downmix."""
    options = {"I": targets.target_lufs, "TP": targets.true_peak_db, "LRA": targets.lra}
    stage = decode_mono(src, [("loudnorm", {**options, "print_format": "json"})], discard=True)
    result = run_chain([stage], timeout_s=timeout_s)
    if not result.ok:
        raise ProcessingFailed("The audio could not be measured.", detail=result.detail)
    return parse_loudnorm_json(result.stderrs[-1])


def second_pass_filters(
    measured: dict[str, float], targets: Targets, *, extra_db: float
) -> Filters:
    """loudnorm with pass 1's measurements (linear=true), back to 48 kHz afterwards.

    `extra_db` adds to the measured target_offset; loudnorm applies it as a plain gain
    ahead of its true-peak limiter.
    """
    options: dict[str, Any] = {
        "I": targets.target_lufs,
        "TP": targets.true_peak_db,
        "LRA": targets.lra,
        "measured_I": _clamp(measured.get("input_i", -99.0), -99.0, 0.0),
        "measured_TP": _clamp(measured.get("input_tp", 99.0), -99.0, 99.0),
        "measured_LRA": _clamp(measured.get("input_lra", 0.0), 0.0, 99.0),
        "measured_thresh": _clamp(measured.get("input_thresh", -70.0), -99.0, 0.0),
        "offset": _clamp(measured.get("target_offset", 0.0) + extra_db, -99.0, 99.0),
        "linear": "true",
    }
    # loudnorm always works (and outputs) at 192 kHz.
    return [("loudnorm", options), ("aresample", {"out_sample_rate": SAMPLE_RATE})]


def parse_loudnorm_json(stderr: str) -> dict[str, float]:
    """The numbers of the JSON block loudnorm prints with print_format=json."""
    blocks = re.findall(r"\{[^{}]*\"input_i\"[^{}]*\}", stderr)
    if not blocks:
        raise ProcessingFailed("The loudness of the audio could not be measured.", detail=stderr)
    raw: dict[str, str] = json.loads(blocks[-1])
    values: dict[str, float] = {}
    for key, text in raw.items():
        try:
            values[key] = float(text)
        except ValueError:
            continue  # normalization_type is a word
    return values


def _clamp(value: float, low: float, high: float) -> float:
    """Keep a measurement inside the range the loudnorm option accepts (-inf -> low)."""
    return low if not math.isfinite(value) else min(max(value, low), high)
