"""Keep the garbage collector out of timed tests, and report the pauses it still makes.

Late in a full run the test process holds millions of objects that earlier tests left
behind (apps, metadata, models). A full collection of that heap stops every thread -
the server's loop, the simulated agents - for most of a second, which a live test with
a 400 ms playout delay hears as an underrun. Before a timed test the heap is collected
once and frozen (gc.freeze: what exists now is never scanned again), so the collections
during the test only walk what the test itself made. The pauses that remain are listed
at the end of the run, so a failed timed test shows whether the collector was to blame.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import pytest

TIMED_DIRS = ("live", "integration", "audio_rt")
TIMED_FILES = ("test_demo_live.py",)
LONG_PAUSE_S = 0.1


class PauseLog:
    """Collector pauses over LONG_PAUSE_S, with the test they happened in."""

    def __init__(self) -> None:
        self.test = "(outside a test)"
        self.long: list[tuple[float, int, str]] = []
        self._started: float | None = None

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        """gc.callbacks hook: time each collection."""
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            took = time.perf_counter() - self._started
            self._started = None
            if took > LONG_PAUSE_S:
                self.long.append((took, int(info.get("generation", -1)), self.test))


def is_timed(item: pytest.Item) -> bool:
    """Whether this test measures time (its directory or file says so)."""
    path = Path(str(item.path))
    return path.name in TIMED_FILES or any(part in TIMED_DIRS for part in path.parts[-3:-1])


_log = PauseLog()


def pytest_configure(config: pytest.Config) -> None:
    gc.callbacks.append(_log.callback)


def pytest_runtest_setup(item: pytest.Item) -> None:
    _log.test = item.nodeid
    if is_timed(item):
        # The collection made here on purpose is not a pause a test suffers.
        gc.callbacks.remove(_log.callback)
        try:
            gc.collect()
        finally:
            gc.callbacks.append(_log.callback)
        gc.freeze()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _log.long:
        return
    worst = sorted(_log.long, reverse=True)[:10]
    terminalreporter.write_sep("-", f"garbage collector pauses over {LONG_PAUSE_S:.1f} s")
    for took, generation, test in worst:
        terminalreporter.write_line(f"{took:.3f} s (generation {generation}) in {test}")
    terminalreporter.write_line(f"{len(_log.long)} such pauses in all")
