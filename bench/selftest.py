"""Acoustic self-test accuracy (issue 17): is the verdict right on simulated faults?

The analysis alone (audio/selftest.py) on audio made by the simulated acoustic path
(audio/acoustic.py), no agent and no real microphone. A healthy cluster is recorded once as
the baseline; then --runs runs each draw a fault kind and its size (seeded): healthy, one or
two of four horns dead, all dead, the highs lost above 1.5-3 kHz by 12-30 dB (also with a
dead horn), an amplifier clipping the top 20-70 % of the sweep, noise at -55..-20 dBFS, a
microphone giving zeros. Every run also has its own capture latency (0-450 ms), ambient
noise (-78..-64 dBFS: up to 11 dB over the baseline's -75, which must not read as a fault)
and a small level drift (+-0.5 dB, weather). Prints one JSON line: the fraction of verdicts right
per fault kind and overall, the wrong verdicts seen, the range of the figures the verdicts
rest on (how far from the thresholds the cases fell), and the analysis time per run.

Usage: python bench/selftest.py [--runs 200] [--seed 17]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio.acoustic import AcousticPath, hear  # noqa: E402
from audio.selftest import BAND_CENTRES_HZ, Figures, TestSignal, analyse, test_signal  # noqa: E402

EXPECTED = {
    "healthy": "ok",
    "one_dead_horn": "ok",
    "two_dead_horns": "level_low",
    "all_horns_dead": "silent",
    "high_loss": "high_loss",
    "high_loss_and_dead_horn": "high_loss",
    "clipping": "distorted",
    "noise": "noisy",
    "mic_zeros": "no_signal_input",
}


RANGED = ("level_vs_baseline_db", "distortion_pct", "noise_floor_dbfs", "snr_db", "highs_db")


def fault(kind: str, rng: random.Random, seed: int) -> AcousticPath:
    """The acoustic path of one run: the fault of `kind`, sized at random, on a normal day."""
    day: dict[str, Any] = {
        "distance_delay_ms": rng.uniform(0.0, 450.0),
        "noise_dbfs": rng.uniform(-78.0, -64.0),
        "mic_gain_db": rng.uniform(-0.5, 0.5),
        "seed": seed,
    }
    horns = list(range(4))
    rng.shuffle(horns)
    if kind == "one_dead_horn":
        day["dead_horns"] = tuple(horns[:1])
    elif kind == "two_dead_horns":
        day["dead_horns"] = tuple(horns[:2])
    elif kind == "all_horns_dead":
        day["dead_horns"] = tuple(horns)
    elif kind in ("high_loss", "high_loss_and_dead_horn"):
        if kind == "high_loss_and_dead_horn":
            day["dead_horns"] = tuple(horns[:1])
        day["band_loss_above_hz"] = rng.uniform(1500.0, 3000.0)
        day["band_loss_db"] = rng.uniform(12.0, 30.0)
    elif kind == "clipping":
        day["clip_at"] = 0.1 * rng.uniform(0.3, 0.8)  # the sweep peaks at 0.1 (-20 dBFS)
    elif kind == "noise":
        day["noise_dbfs"] = rng.uniform(-55.0, -20.0)
    return AcousticPath(**day)


def highs_db(now: Figures, then: Figures) -> float:
    """The worst 2-8 kHz band change against the low-mid bands' (high_loss decides on it)."""
    change = {
        hz: a - b for hz, a, b in zip(BAND_CENTRES_HZ, now.bands_db, then.bands_db, strict=True)
    }
    reference = statistics.median(change[hz] for hz in (250, 500, 1000))
    return round(min(change[hz] - reference for hz in (2000, 4000, 8000)), 2)


def recording(kind: str, path: AcousticPath, signal: TestSignal) -> np.ndarray[Any, Any]:
    """What the microphone gives for this run."""
    heard = hear(path, signal.samples, signal.sample_rate)
    return np.zeros_like(heard) if kind == "mic_zeros" else heard


def bench(runs: int, seed: int) -> dict[str, Any]:
    """Run the scenario; return the figures."""
    signal = test_signal()
    first = analyse(signal, hear(AcousticPath(seed=0), signal.samples, 48_000), baseline=None)
    if first.verdict != "baseline" or first.figures is None:
        raise RuntimeError(f"the healthy baseline run said {first.verdict}")
    rng = random.Random(seed)
    kinds = list(EXPECTED)
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    wrong: dict[str, Counter[str]] = {k: Counter() for k in kinds}
    times_ms: list[float] = []
    seen: dict[str, dict[str, list[float]]] = {k: {f: [] for f in RANGED} for k in kinds}
    for i in range(runs):
        kind = kinds[i % len(kinds)] if i < len(kinds) else rng.choice(kinds)
        path = fault(kind, rng, seed * 100_000 + i + 1)
        recorded = recording(kind, path, signal)
        started = time.perf_counter()
        result = analyse(signal, recorded, baseline=first.figures)
        times_ms.append((time.perf_counter() - started) * 1000.0)
        total[kind] += 1
        if result.figures is not None and result.level_vs_baseline_db is not None:
            seen[kind]["level_vs_baseline_db"].append(result.level_vs_baseline_db)
            seen[kind]["distortion_pct"].append(result.figures.distortion_pct)
            seen[kind]["noise_floor_dbfs"].append(result.figures.noise_floor_dbfs)
            seen[kind]["snr_db"].append(result.figures.snr_db)
            seen[kind]["highs_db"].append(highs_db(result.figures, first.figures))
        if result.verdict == EXPECTED[kind]:
            right[kind] += 1
        else:
            wrong[kind][result.verdict] += 1
    per_kind = {
        k: {
            "runs": total[k],
            "correct": right[k],
            "fraction": round(right[k] / total[k], 3) if total[k] else None,
            "wrong_verdicts": dict(wrong[k]),
            "ranges": {f: [min(v), max(v)] for f, v in seen[k].items() if v},
        }
        for k in kinds
    }
    ordered = sorted(times_ms)
    return {
        "benchmark": "selftest",
        "runs": runs,
        "seed": seed,
        "correct_fraction": round(sum(right.values()) / runs, 3),
        "per_fault": per_kind,
        "analysis_ms_p50": round(statistics.median(times_ms), 1),
        "analysis_ms_p95": round(ordered[max(0, -(-len(ordered) * 95 // 100) - 1)], 1),
        "analysis_ms_max": round(ordered[-1], 1),
        "signal": {"sweep_s": signal.sweep_s, "sample_rate": signal.sample_rate},
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def main() -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    if not 1 <= args.runs <= 100_000:
        parser.error("--runs must be 1..100000")
    print(json.dumps(bench(args.runs, args.seed)))


if __name__ == "__main__":
    main()
