"""Moved to loa_testkit/playfix.py (bench/ uses it too); kept for importers not yet switched."""

from loa_testkit.playfix import (
    FAST,
    ChunkFilter,
    Clip,
    ServerDouble,
    at,
    document,
    heard,
    item,
    join_zone,
    make_clip,
    serving,
    timing_lines,
    wav_hz,
)

__all__ = [
    "FAST",
    "ChunkFilter",
    "Clip",
    "ServerDouble",
    "at",
    "document",
    "heard",
    "item",
    "join_zone",
    "make_clip",
    "serving",
    "timing_lines",
    "wav_hz",
]
