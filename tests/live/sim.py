"""Moved to loa_testkit/livesim.py (bench/ uses it too); kept for importers not yet switched."""

from loa_testkit.livesim import (
    Recording,
    SimListener,
    heard_times,
    load_recording,
    percentile,
    skews,
    summary_ms,
)

__all__ = [
    "Recording",
    "SimListener",
    "heard_times",
    "load_recording",
    "percentile",
    "skews",
    "summary_ms",
]
