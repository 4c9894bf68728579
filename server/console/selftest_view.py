"""The acoustic self-test on the device page: verdict colours, power words, the trend drawing."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schedules import to_local_wall

TREND_SPAN = timedelta(weeks=12)
BANDS = ("125", "250", "500", "1000", "2000", "4000", "8000")
# Codes that say the horns are fine, and codes that say nothing about them (not run, no
# microphone, became the reference); every other code is a fault a technician goes to fix.
GOOD = frozenset({"ok"})
NEUTRAL = frozenset({"baseline", "busy", "interrupted", "no_capture"})
POWER_STATES = ("mains", "battery", "battery_low")
# The drawing's size in SVG units (it scales to the card's width).
WIDTH, HEIGHT = 360, 150
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 22
GREEN, RED, GREY, BLUE = "#1e7d3a", "#b3261e", "#7a828a", "#1d5c8f"


def tone(code: str | None) -> str:
    """'ok', 'fail' or 'neutral': how a run's verdict is coloured."""
    if code in GOOD:
        return "ok"
    if code is None or code in NEUTRAL:
        return "neutral"
    return "fail"


def power_state(telemetry: Mapping[str, Any] | None) -> str | None:
    """The device's reported power source, or None when its profile names no power input."""
    value = (telemetry or {}).get("power")
    return value if value in POWER_STATES else None


def battery_cap(telemetry: Mapping[str, Any] | None) -> int | None:
    """The volume cap the device applies on battery (a whole 0-100), if it reports one."""
    value = (telemetry or {}).get("battery_volume_cap")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100:
        return value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True)
class BandRow:
    """One row of the octave-band table: a label key and a value per band (None: unknown)."""

    key: str
    values: tuple[float | None, ...]


def band_rows(run: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None) -> list[BandRow]:
    """This run's level per octave band, the baseline's, and the difference, as they exist."""
    mine = _bands(run)
    if mine is None:
        return []
    rows = [BandRow("selftest.bands.run", mine)]
    base = _bands(baseline) if baseline is not None and baseline.get("id") != run_id(run) else None
    if base is not None:
        rows.append(BandRow("selftest.bands.baseline", base))
        diff = tuple(
            None if a is None or b is None else round(a - b, 1)
            for a, b in zip(mine, base, strict=True)
        )
        rows.append(BandRow("selftest.bands.diff", diff))
    return rows


def run_id(run: Mapping[str, Any] | None) -> Any:
    """A run's id (None for no run)."""
    return None if run is None else run.get("id")


def _bands(run: Mapping[str, Any] | None) -> tuple[float | None, ...] | None:
    figures = (run or {}).get("figures")
    if not isinstance(figures, Mapping) or not isinstance(figures.get("bands_db"), Mapping):
        return None
    return tuple(_number(figures["bands_db"].get(b)) for b in BANDS)


@dataclass(frozen=True)
class Mark:
    """One run on the trend: where it is drawn, how it is coloured, what its tooltip says."""

    x: float
    y: float
    tone: str
    title: str


@dataclass(frozen=True)
class Trend:
    """The level over the last weeks, ready for the template's inline SVG."""

    points: str  # the polyline's "x,y x,y …" through the runs that measured a level
    marks: list[Mark]  # every run (a run without a level sits on the bottom axis)
    baseline_y: float | None
    top_label: str
    bottom_label: str
    start_label: str
    end_label: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_x: int = WIDTH - RIGHT
    bottom_y: int = HEIGHT - BOTTOM

    @property
    def measured(self) -> int:
        """How many runs the line goes through."""
        return len(self.points.split()) if self.points else 0


def _at(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def trend(
    entries: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    baseline_db: float | None,
    label: Callable[[str], str],
) -> Trend | None:
    """The trend drawing over the 12 weeks up to now; None when no run falls in them."""
    start = now - TREND_SPAN
    runs: list[tuple[datetime, float | None, str]] = []
    for entry in entries:
        at = _at(entry.get("at"))
        if at is None or not start <= at <= now:
            continue
        runs.append((at, _number(entry.get("level_db")), str(entry.get("code") or "")))
    if not runs:
        return None
    runs.sort(key=lambda r: r[0])
    levels = [lv for _at_, lv, _c in runs if lv is not None]
    if baseline_db is not None:
        levels.append(baseline_db)
    low, high = (min(levels), max(levels)) if levels else (-60.0, 0.0)
    # Whole-3-dB bounds with room around the line; at least 12 dB tall so noise looks small.
    low, high = math.floor(low / 3 - 1) * 3.0, math.ceil(high / 3 + 1) * 3.0
    if high - low < 12:
        low = high - 12
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = TREND_SPAN.total_seconds()

    def x_of(at: datetime) -> float:
        return round(LEFT + plot_w * (at - start).total_seconds() / span, 1)

    def y_of(level: float) -> float:
        return round(TOP + plot_h * (high - level) / (high - low), 1)

    points: list[str] = []
    marks: list[Mark] = []
    for at, level, code in runs:
        x = x_of(at)
        y = y_of(level) if level is not None else float(HEIGHT - BOTTOM)
        if level is not None:
            points.append(f"{x},{y}")
        when = f"{to_local_wall(at):%d/%m %H:%M}"
        shown = f" · {level:.1f} dB" if level is not None else ""
        marks.append(Mark(x, y, tone(code), f"{when} · {label(code)}{shown}"))
    return Trend(
        points=" ".join(points),
        marks=marks,
        baseline_y=y_of(baseline_db) if baseline_db is not None else None,
        top_label=f"{high:.0f} dB",
        bottom_label=f"{low:.0f} dB",
        start_label=f"{to_local_wall(start):%d/%m}",
        end_label=f"{to_local_wall(now):%d/%m}",
    )


TONE_COLOURS = {"ok": GREEN, "fail": RED, "neutral": GREY}
