"""Loudness-normalise any upload to a 48 kHz mono Ogg/Opus clip (EBU R128, two passes).

Pass 1 measures the mono 48 kHz downmix with ebur128 (the signal we will actually play).
Pass 2 applies what pass 1 asks for, cheapest first:

* linear:  one static gain (exactly what loudnorm's linear mode does, without its 192 kHz
           round trip) when the true peak stays under the ceiling;
* limited: the same gain plus FFmpeg's lookahead limiter when the loudest peaks would go
           over the ceiling by up to MAX_LIMITING_DB (typical raw speech). Limiting costs
           some loudness, so the gain is first searched with cheap trial passes (no
           encoding; on a sample of long inputs) when limiting is heavy, and searched
           again on the whole input if the written clip still misses the target;
* dynamic: loudnorm's documented two passes (print_format=json, then measured_I/TP/LRA/
           thresh/offset with linear=true) when the loudness range is wider than `lra` or
           limiting would be heavier than MAX_LIMITING_DB;
* hard_limited: rescue for short or very peaky clips (a spoken word, a chime) that the
           above leave more than ACCEPT_LU off target, and for dynamic on clips shorter
           than loudnorm's 3 s window (it made them 10-20 dB quieter): a gain searched under
           a fast limiter that lowers the crest factor, up to MAX_HARD_LIMITING_DB;
* peak:    the stated fallback when even that cannot reach the target: the clip is made as
           loud as MAX_HARD_LIMITING_DB of fast limiting allows, never quieter than it was;
* silent:  no gain at all, so hiss is never blown up. Integrated loudness is undefined
           (every 400 ms block under the -70 LUFS gate) exactly when a clip of 0.4 s or
           more is this quiet, so "silent" is also the fallback for gated-away clips.

The written file is decoded and measured with ebur128 while it is being written.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from audio import _loudnorm
from audio._ffmpeg import QUIET, compile_args, ffprobe_json, run_chain, timeout_for
from audio._gain import (
    SEARCH_FIRST_DB,
    GainPlan,
    NormalizeMode,
    gain_filters,
    limiting_db,
    max_gain_db,
    plan_gain,
    sample_windows,
    search_hard_limited_gain,
    search_limited_gain,
)
from audio._passes import SAMPLE_RATE, Filters, Targets, decode_mono
from audio.errors import ProcessingFailed
from audio.loudness import Loudness, ebur128_from_pipe_args, parse_ebur128_summary
from audio.probe import probe

# A written clip further than this from the target is corrected once more.
RETRY_LU = 0.3
OPUS_COMPLEXITY = 10
# CELT only ("lowdelay"): it keeps each band's energy, so loudness survives encoding.
# The default hybrid/SILK mode lost 1.7 LU on noisy material at 32 kb/s in our tests.
OPUS_APPLICATION = "lowdelay"
# What "on target" means for an operator; a clip further off gets the hard-limited rescue.
ACCEPT_LU = 1.0
# loudnorm's dynamic mode works in 3 s windows; on shorter input its gain goes wrong.
LOUDNORM_MIN_S = 3.0


@dataclass(frozen=True, slots=True)
class _Pass2:
    """What every pass-2 attempt shares: the input, where to write, pass 1, targets, time."""

    src: Path
    tmp: Path
    before: Loudness
    targets: Targets
    duration_s: float
    timeout_s: float


@dataclass(frozen=True, slots=True)
class NormalizeResult:
    """Loudness before and after (measured on the written file), duration, how it was done."""

    before: Loudness
    after: Loudness
    duration_s: float
    mode: NormalizeMode
    gain_db: float

    @property
    def silent(self) -> bool:
        """True when the input was silence and was written without gain."""
        return self.mode == "silent"


def normalize(
    *,
    src: Path,
    dst: Path,
    target_lufs: float = -16.0,
    true_peak_db: float = -1.5,
    lra: float = 11.0,
    bitrate: int = 32000,
    timeout_s: float | None = None,
) -> NormalizeResult:
    """Write `src` to `dst` as loudness-normalised 48 kHz mono Ogg/Opus (video dropped)."""
    targets = Targets(target_lufs, true_peak_db, lra, bitrate)
    _check(targets)
    src, dst = Path(src), Path(dst)
    if not dst.parent.is_dir():
        raise ValueError(f"destination folder {dst.parent} does not exist")
    info = probe(src)  # plain-words errors for anything that is not usable audio
    budget = timeout_s if timeout_s is not None else timeout_for(info.duration_s)
    before = _measure_source(src, timeout_s=budget)
    plan = plan_gain(before, target_lufs=target_lufs, true_peak_db=true_peak_db, lra=lra)
    tmp = dst.parent / f".{dst.name}.{secrets.token_hex(6)}.part"
    try:
        job = _Pass2(src, tmp, before, targets, info.duration_s, budget)
        after, plan = _apply(job, plan)
        duration_s = _output_duration(tmp)
        try:
            os.replace(tmp, dst)
        except OSError as exc:
            raise ProcessingFailed(
                "The normalised audio could not be saved.", detail=str(exc)
            ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return NormalizeResult(
        before=before, after=after, duration_s=duration_s, mode=plan.mode, gain_db=plan.gain_db
    )


def _apply(job: _Pass2, plan: GainPlan) -> tuple[Loudness, GainPlan]:
    """Pass 2 into `job.tmp`; returns the loudness written and the plan finally used."""
    src, tmp, before, targets, timeout_s = job.src, job.tmp, job.before, job.targets, job.timeout_s
    if plan.mode == "silent":
        return _render(src, tmp, [], targets, timeout_s=timeout_s), plan
    if plan.mode == "dynamic" and job.duration_s < LOUDNORM_MIN_S:
        return _rescue(src, tmp, before, targets, timeout_s=timeout_s)
    after, plan = _apply_planned(job, plan)
    if abs(after.integrated_lufs - targets.target_lufs) <= ACCEPT_LU:
        return after, plan
    rescued, rescue_plan = _rescue(src, tmp, before, targets, timeout_s=timeout_s)
    if abs(rescued.integrated_lufs - targets.target_lufs) < abs(
        after.integrated_lufs - targets.target_lufs
    ):
        return rescued, rescue_plan
    # The first try was closer after all (rare): write it again.
    return _apply_planned(job, plan)


def _rescue(
    src: Path, tmp: Path, before: Loudness, targets: Targets, *, timeout_s: float
) -> tuple[Loudness, GainPlan]:
    """Fast-limiter gain searched on the whole input, written; "peak" if it stays short."""
    plan = search_hard_limited_gain(src, before, targets, timeout_s=timeout_s)
    after = _render(src, tmp, gain_filters(plan, targets), targets, timeout_s=timeout_s)
    if after.integrated_lufs < before.integrated_lufs and before.integrated_lufs < (
        targets.target_lufs
    ):
        # Encoding cost more than the gain gave: never hand back a quieter clip.
        plan = GainPlan("peak", max_gain_db(before, targets, "peak"))
        after = _render(src, tmp, gain_filters(plan, targets), targets, timeout_s=timeout_s)
    return after, plan


def _apply_planned(job: _Pass2, plan: GainPlan) -> tuple[Loudness, GainPlan]:
    """The plan from pass 1 (linear, limited with its search, or loudnorm dynamic)."""
    src, tmp, before, targets, timeout_s = job.src, job.tmp, job.before, job.targets, job.timeout_s
    if plan.mode == "limited" and limiting_db(before, plan.gain_db, targets.true_peak_db) > (
        SEARCH_FIRST_DB
    ):
        found = search_limited_gain(
            src,
            before,
            targets,
            start_gain_db=plan.gain_db,
            windows=sample_windows(job.duration_s),
            timeout_s=timeout_s,
        )
        plan = GainPlan("dynamic", plan.gain_db) if found is None else GainPlan("limited", found)
    if plan.mode == "dynamic":
        return _dynamic(src, tmp, targets, timeout_s=timeout_s), plan
    after = _render(src, tmp, gain_filters(plan, targets), targets, timeout_s=timeout_s)
    if plan.mode != "limited" or abs(after.integrated_lufs - targets.target_lufs) <= RETRY_LU:
        return after, plan
    # The written clip missed (a sample misled the search, or none was made): search on
    # the whole input, starting from what we now know, and write again.
    found = search_limited_gain(
        src,
        before,
        targets,
        start_gain_db=plan.gain_db,
        windows=None,
        known=(plan.gain_db, after.integrated_lufs),
        timeout_s=timeout_s,
    )
    if found is None:
        return _dynamic(src, tmp, targets, timeout_s=timeout_s), GainPlan("dynamic", plan.gain_db)
    plan = GainPlan("limited", found)
    return _render(src, tmp, gain_filters(plan, targets), targets, timeout_s=timeout_s), plan


def _dynamic(src: Path, tmp: Path, targets: Targets, *, timeout_s: float) -> Loudness:
    """loudnorm's two passes; once more with a corrected offset if the clip misses.

    On short clips loudnorm's 3 s gain windows can leave the integrated loudness up to
    about 1 LU off; its offset is a plain gain ahead of its limiter, so adding the miss
    helps unless the limiter is what holds the loudness down.
    """
    measured = _loudnorm.first_pass(src, targets, timeout_s=timeout_s)
    filters = _loudnorm.second_pass_filters(measured, targets, extra_db=0.0)
    after = _render(src, tmp, filters, targets, timeout_s=timeout_s)
    miss = targets.target_lufs - after.integrated_lufs
    if abs(miss) > RETRY_LU and not after.is_silent:
        filters = _loudnorm.second_pass_filters(measured, targets, extra_db=miss)
        after = _render(src, tmp, filters, targets, timeout_s=timeout_s)
    return after


def _measure_source(src: Path, *, timeout_s: float) -> Loudness:
    """Pass 1: ebur128 on the mono 48 kHz downmix, decoding and measuring on two cores."""
    measure = ebur128_from_pipe_args(input_format="f32le", sample_rate=SAMPLE_RATE)
    result = run_chain([decode_mono(src, []), measure], timeout_s=timeout_s)
    if not result.ok:
        raise ProcessingFailed("The audio could not be decoded.", detail=result.detail)
    return parse_ebur128_summary(result.stderrs[-1])


def _render(
    src: Path, tmp: Path, filters: Filters, targets: Targets, *, timeout_s: float
) -> Loudness:
    """Pass 2: decode, filter, encode to Opus in `tmp`, and measure what was written."""
    encode = ffmpeg.input("pipe:", format="f32le", ar=SAMPLE_RATE, ac=1).output(
        "pipe:",
        format="ogg",
        acodec="libopus",
        audio_bitrate=targets.bitrate,
        vbr="on",
        compression_level=OPUS_COMPLEXITY,
        application=OPUS_APPLICATION,
    )
    stages = [decode_mono(src, filters), compile_args(encode, *QUIET)]
    measure = ebur128_from_pipe_args(input_format="ogg")
    try:
        result = run_chain(stages, fan_out=[measure], tap_file=tmp, timeout_s=timeout_s)
    except OSError as exc:  # the destination disk is full or gone
        raise ProcessingFailed(
            "The converted audio could not be written.", detail=str(exc)
        ) from exc
    if not result.ok:
        raise ProcessingFailed("The audio could not be converted.", detail=result.detail)
    return parse_ebur128_summary(result.stderrs[-1])


def _check(targets: Targets) -> None:
    # The ranges loudnorm and libopus accept; outside them is a programming error.
    if not -70.0 <= targets.target_lufs <= -5.0:
        raise ValueError("target_lufs must be between -70 and -5")
    if not -9.0 <= targets.true_peak_db <= 0.0:
        raise ValueError("true_peak_db must be between -9 and 0")
    if not 1.0 <= targets.lra <= 50.0:
        raise ValueError("lra must be between 1 and 50")
    if not 6000 <= targets.bitrate <= 256000:
        raise ValueError("bitrate must be between 6000 and 256000 b/s")


def _output_duration(path: Path) -> float:
    """Duration of the Opus file we wrote, as a player will see it."""
    found = ffprobe_json(path)
    duration = (found or {}).get("format", {}).get("duration")
    try:
        return float(duration)
    except (TypeError, ValueError):
        raise ProcessingFailed("The normalised audio could not be read back.") from None


__all__ = ["GainPlan", "NormalizeMode", "NormalizeResult", "normalize", "plan_gain"]
