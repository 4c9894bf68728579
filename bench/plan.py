"""Benchmark: compile 7-day schedule documents for 10,000 devices in 500 zones.

Prints one JSON line: {"bench":"plan","devices":..,"zones":..,"programmes":..,"seconds":..,
"peak_rss_mb":..}. `seconds` covers expanding the programmes and compiling (and content-
hashing) every device's document; generating the synthetic programmes is not timed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta

from schedules import PRESETS, ClipRef, Priority, ProgrammeSpec, ScheduleCompiler

HORIZON = timedelta(days=7)
EXTRA_RULES = (
    "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=11;BYMINUTE=30;BYSECOND=0",
    "FREQ=MONTHLY;BYMONTHDAY=1,15;BYHOUR=19;BYMINUTE=0;BYSECOND=0",
    "FREQ=DAILY;INTERVAL=2;BYHOUR=18;BYMINUTE=15;BYSECOND=0",
)


def _clip(rng: random.Random, pool: list[ClipRef]) -> ClipRef:
    return rng.choice(pool)


def make_programmes(
    *, count: int, zones: int, start: datetime, rng: random.Random
) -> list[ProgrammeSpec]:
    """A mix of one-off and recurring programmes, 1-3 zones and 1-4 clips each."""
    clip_pool = [
        ClipRef(
            sha256=hashlib.sha256(f"clip-{n}".encode()).hexdigest(),
            duration_s=rng.uniform(20, 600),
            size_bytes=rng.randint(100_000, 5_000_000),
        )
        for n in range(count)
    ]
    rules = [preset.rrule for preset in PRESETS.values()] + list(EXTRA_RULES)
    priorities = [Priority.NORMAL] * 8 + [Priority.PRIORITY] * 2 + [Priority.EMERGENCY]
    programmes: list[ProgrammeSpec] = []
    for programme_id in range(1, count + 1):
        timing: dict[str, object]
        if rng.random() < 0.4:
            offset = timedelta(minutes=rng.randrange(0, 7 * 24 * 60, 5))
            timing = {"start": start + offset}
        else:
            # Started up to a year ago, as long-running bulletins do.
            dtstart = datetime(2025, 1, 1) + timedelta(days=rng.randrange(0, 365))
            timing = {"rrule": rng.choice(rules), "dtstart": dtstart}
        programmes.append(
            ProgrammeSpec(
                id=programme_id,
                title=f"Programme {programme_id}",
                priority=rng.choice(priorities),
                items=[_clip(rng, clip_pool) for _ in range(rng.randint(1, 4))],
                zone_ids=rng.sample(range(1, zones + 1), rng.randint(1, 3)),
                volume=rng.choice([None, 60, 80]),
                org_unit_id=1,
                **timing,
            )
        )
    return programmes


def run(*, devices: int, zones: int, programmes: int, seed: int) -> dict[str, object]:
    """Build the synthetic fleet, time the compile, and return the result line."""
    rng = random.Random(seed)
    window_start = datetime(2026, 1, 5, tzinfo=UTC)
    specs = make_programmes(count=programmes, zones=zones, start=window_start, rng=rng)
    device_zones = [rng.sample(range(1, zones + 1), rng.randint(1, 2)) for _ in range(devices)]
    generated_at = window_start - timedelta(minutes=1)

    began = time.perf_counter()
    compiler = ScheduleCompiler(
        programmes=specs, window_start=window_start, window_end=window_start + HORIZON
    )
    items = 0
    for index, zone_ids in enumerate(device_zones):
        document = compiler.compile(
            device_id=f"dev-{index:05d}", zone_ids=zone_ids, version=1, generated_at=generated_at
        )
        document.content_hash()
        items += len(document.items)
    seconds = time.perf_counter() - began

    # ru_maxrss is in KiB on Linux.
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "bench": "plan",
        "devices": devices,
        "zones": zones,
        "programmes": programmes,
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "items_per_device": round(items / devices, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmark and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--zones", type=int, default=500)
    parser.add_argument("--programmes", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    result = run(devices=args.devices, zones=args.zones, programmes=args.programmes, seed=args.seed)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
