"""Static gain for normalisation: the plan from pass 1, and the gain search under the limiter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from audio._passes import Filters, Targets, integrated_lufs
from audio.loudness import Loudness

NormalizeMode = Literal["linear", "limited", "dynamic", "hard_limited", "peak", "silent"]

# Never raise by more than this: a whisper at -66 LUFS stays a whisper rather than hiss.
MAX_GAIN_DB = 50.0
# Limiting more than this squashes even speech; loudnorm's dynamic mode does better then.
# (Synthetic voices such as espeak-ng have narrow glottal pulses that need about 6-7 dB.)
MAX_LIMITING_DB = 10.0
# The limiter works on samples at 48 kHz; keep this margin for peaks between samples.
LIMITER_MARGIN_DB = 0.5
# With this much limiting the loudness loss is worth finding before the (costly) render.
SEARCH_FIRST_DB = 2.0
SEARCH_TOLERANCE_LU = 0.15
SEARCH_TRIALS = 4
# Long inputs are searched on a sample: this many stretches of this length, evenly spread.
SAMPLE_WINDOWS = 8
SAMPLE_WINDOW_S = 30.0
# Short or very peaky clips (one spoken syllable, a chime) that the gentle limiter and
# loudnorm cannot lift: a fast limiter (release shorter than a pitch period) lowers the
# crest factor, up to this much limiting. Past it the clip is left as loud as that allows
# ("peak" fallback), never quieter than it came in.
MAX_HARD_LIMITING_DB = 24.0
HARD_SEARCH_TRIALS = 6


@dataclass(frozen=True, slots=True)
class GainPlan:
    """The pass-2 decision: which method and the static gain it starts from."""

    mode: NormalizeMode
    gain_db: float


def plan_gain(before: Loudness, *, target_lufs: float, true_peak_db: float, lra: float) -> GainPlan:
    """Choose linear gain, gain plus limiter, loudnorm dynamic, or nothing (silence)."""
    if before.is_silent:
        return GainPlan("silent", 0.0)
    gain_db = round(min(target_lufs - before.integrated_lufs, MAX_GAIN_DB), 2)
    over_db = limiting_db(before, gain_db, true_peak_db)
    if before.lra > lra or over_db > MAX_LIMITING_DB:
        return GainPlan("dynamic", gain_db)
    return GainPlan("linear" if over_db <= 0 else "limited", gain_db)


def limiting_db(before: Loudness, gain_db: float, true_peak_db: float) -> float:
    """How far the loudest peak would go over the ceiling with this gain."""
    return before.true_peak_dbtp + gain_db - true_peak_db


def gain_filters(plan: GainPlan, targets: Targets) -> Filters:
    """The static-gain part of pass 2: volume, plus the lookahead limiter when limited."""
    filters: Filters = []
    if plan.mode in ("linear", "limited", "hard_limited", "peak"):
        filters.append(("volume", {"volume": f"{plan.gain_db}dB"}))
    ceiling = 10 ** ((targets.true_peak_db - LIMITER_MARGIN_DB) / 20)
    limiter = {"limit": max(ceiling, 0.0625), "level": 0, "latency": 1}
    if plan.mode == "limited":
        filters.append(("alimiter", {**limiter, "attack": 5, "release": 50}))
    elif plan.mode in ("hard_limited", "peak"):
        filters.append(("alimiter", {**limiter, "attack": 1, "release": 3}))
    return filters


def max_gain_db(before: Loudness, targets: Targets, mode: NormalizeMode) -> float:
    """The largest gain this mode allows: its limiting budget over the ceiling, MAX_GAIN_DB."""
    budget = MAX_HARD_LIMITING_DB if mode in ("hard_limited", "peak") else MAX_LIMITING_DB
    return round(min(targets.true_peak_db - before.true_peak_dbtp + budget, MAX_GAIN_DB), 2)


def search_hard_limited_gain(
    src: Path, before: Loudness, targets: Targets, *, timeout_s: float
) -> GainPlan:
    """The fast-limiter gain that reaches the target; at most the mode's budget ("peak").

    Trials are whole-input passes without encoding (only short or peaky clips get here).
    """
    top = max_gain_db(before, targets, "hard_limited")
    gain = min(targets.target_lufs - before.integrated_lufs, top)
    tried: list[tuple[float, float]] = []
    slope = 0.5
    for _ in range(HARD_SEARCH_TRIALS):
        if tried:
            last_gain, reached = tried[-1]
            if abs(reached - targets.target_lufs) <= SEARCH_TOLERANCE_LU:
                break
            gain = last_gain + (targets.target_lufs - reached) / slope
        gain = round(min(gain, top), 2)
        if any(g == gain for g, _ in tried):
            break  # the budget is spent: nothing louder to try
        filters = gain_filters(GainPlan("hard_limited", gain), targets)
        tried.append((gain, integrated_lufs(src, filters, timeout_s=timeout_s)))
        if len(tried) >= 2 and tried[-1][0] != tried[-2][0]:
            (g0, i0), (g1, i1) = tried[-2], tried[-1]
            slope = min(max((i1 - i0) / (g1 - g0), 0.1), 1.0)
    best_gain, reached = min(tried, key=lambda point: abs(point[1] - targets.target_lufs))
    if targets.target_lufs - reached <= SEARCH_TOLERANCE_LU:
        return GainPlan("hard_limited", best_gain)
    if all(g != top for g, _ in tried):
        tried.append(
            (
                top,
                integrated_lufs(
                    src, gain_filters(GainPlan("peak", top), targets), timeout_s=timeout_s
                ),
            )
        )
    # Short of the target within the budget: the loudest gain tried is the fallback.
    return GainPlan("peak", max(tried, key=lambda point: point[1])[0])


def sample_windows(duration_s: float) -> list[tuple[float, float]] | None:
    """Evenly spread stretches to search on, or None when the whole input is short enough."""
    if duration_s <= 2 * SAMPLE_WINDOWS * SAMPLE_WINDOW_S:
        return None
    step = duration_s / SAMPLE_WINDOWS
    return [
        (i * step + (step - SAMPLE_WINDOW_S) / 2, SAMPLE_WINDOW_S) for i in range(SAMPLE_WINDOWS)
    ]


def search_limited_gain(
    src: Path,
    before: Loudness,
    targets: Targets,
    *,
    start_gain_db: float,
    windows: list[tuple[float, float]] | None,
    known: tuple[float, float] | None = None,
    timeout_s: float,
) -> float | None:
    """The gain that lands on target once the limiter has shaved the peaks (secant search).

    Trials decode, adjust and measure without encoding. On a sample (`windows`) the aim is
    shifted by how much the sample's loudness differs from the whole input's. `known` is
    a (gain, loudness) point already measured on the whole input. Returns None when the
    answer would need more than MAX_LIMITING_DB of limiting.
    """
    aim = targets.target_lufs
    if windows is not None:
        sample_lufs = integrated_lufs(src, [], windows=windows, timeout_s=timeout_s)
        aim -= before.integrated_lufs - sample_lufs
    tried = [known] if known is not None else []
    gain = start_gain_db
    slope = 0.7  # LU gained per dB of gain: below 1 as the limiter eats part; then measured
    for _ in range(SEARCH_TRIALS):
        if tried:
            last_gain, reached = tried[-1]
            if abs(reached - aim) <= SEARCH_TOLERANCE_LU:
                break
            gain = last_gain + (aim - reached) / slope
        gain = round(min(gain, MAX_GAIN_DB), 2)
        if limiting_db(before, gain, targets.true_peak_db) > MAX_LIMITING_DB:
            return None
        filters = gain_filters(GainPlan("limited", gain), targets)
        tried.append((gain, integrated_lufs(src, filters, windows=windows, timeout_s=timeout_s)))
        if len(tried) >= 2 and tried[-1][0] != tried[-2][0]:
            (g0, i0), (g1, i1) = tried[-2], tried[-1]
            slope = min(max((i1 - i0) / (g1 - g0), 0.2), 1.0)
    return min(tried, key=lambda point: abs(point[1] - aim))[0]
