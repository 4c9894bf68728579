"""An offline model of live skew over BAD_4G: what the band and the probe count each buy.

Not a measurement (docs/benchmarks.md, "Eighth pass", says which figures came from it). Each
of 10 devices bounds its clock offset from below by its fastest trip down (live frames:
plenty, near their floor) and from above by its fastest probe up; its error is half the
difference of the two excesses over the floor. A trip up is U(0, 80 ms) (BAD_4G's uniform
+-40 ms) plus two U(0, 1 ms) hop delays (a proxy or loop waking late). Devices start with
`start` probes held, then probe `rate` times a second for 10 minutes; each output follows its
estimate within `JitterBuffer`'s band: corrected to the band's edge (or, with `recentre`,
to its middle) once off by more than `tol_ms`. Skew: the spread of the 10 outputs, each
second; the figure is its p95, averaged over seeds (with the seeds' range).

    python bench/_skewmodel.py      (about 30 s; one JSON line)
"""

from __future__ import annotations

import json
import random
import statistics

DEVICES = 10
MINUTES = 10
SEEDS = 100


def _trip_up(rng: random.Random) -> float:
    """One probe's way up, above the floor (ms)."""
    return rng.uniform(0, 80) + rng.uniform(0, 1) + rng.uniform(0, 1)


def _trip_down(rng: random.Random) -> float:
    """One frame's way down, above the floor (ms): no link jitter survives 3,000 of them."""
    return rng.uniform(0, 1) + rng.uniform(0, 1) + rng.uniform(0, 0.5)


def skew_p95(seed: int, *, start: int, rate: int, tol_ms: float, recentre: bool) -> float:
    """The p95 of the spread of the devices' outputs (ms), one sample a second."""
    rng = random.Random(seed)
    ups = [min(_trip_up(rng) for _ in range(start)) for _ in range(DEVICES)]
    downs = [min(_trip_down(rng) for _ in range(3000)) for _ in range(DEVICES)]
    band = [0.0] * DEVICES  # where each output sits relative to its own estimate
    skews = []
    for second in range(MINUTES * 60):
        outputs = []
        for i in range(DEVICES):
            old = (ups[i] - downs[i]) / 2
            ups[i] = min([ups[i]] + [_trip_up(rng) for _ in range(rate)])
            new = (ups[i] - downs[i]) / 2
            band[i] += new - old  # the estimate moved; the output has not yet
            if abs(band[i]) > tol_ms:
                band[i] = 0.0 if recentre else (tol_ms if band[i] > 0 else -tol_ms)
            outputs.append(-new + band[i])
        if second:
            skews.append(max(outputs) - min(outputs))
    skews.sort()
    return skews[int(0.95 * len(skews))]


def case(*, start: int, rate: int, tol_ms: float = 0.2, recentre: bool = False) -> dict[str, float]:
    """Mean and range over the seeds of the skew p95 (ms)."""
    p95 = [
        skew_p95(s, start=start, rate=rate, tol_ms=tol_ms, recentre=recentre) for s in range(SEEDS)
    ]
    return {
        "mean_ms": round(statistics.mean(p95), 3),
        "min_ms": round(min(p95), 3),
        "max_ms": round(max(p95), 3),
    }


def main() -> None:
    """Print the band's cases and the probe counts' cases as one JSON line."""
    band = {
        "edge 0.2 ms": case(start=230, rate=2),
        "recentre 0.2 ms": case(start=230, rate=2, recentre=True),
        "edge 0.1 ms": case(start=230, rate=2, tol_ms=0.1),
        "no band": case(start=230, rate=2, tol_ms=0.0),
    }
    samples = {
        f"start {start}, {rate}/s": case(start=start, rate=rate)
        for start, rate in ((84, 2), (84, 4), (184, 2), (230, 2), (230, 4), (500, 2))
    }
    print(json.dumps({"bench": "skew_model", "band": band, "samples": samples}))


if __name__ == "__main__":
    main()
