"""Start alignment and stall recovery measured from outside (bench/live_external.py, 2 agents).

Real `loa-server serve`, `loa-server live --input -` and `loa-agent` processes; each agent
hands raw PCM to a FIFO as it plays, an epoll reader in this process stamps every read.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from server.settings import ServerSettings
from tests.server.test_programmes_fixtures import has_mosquitto

BENCH = Path(__file__).resolve().parents[2] / "bench" / "live_external.py"
DELAY_MS = 200


def _measure(**kw: Any) -> dict[str, Any]:
    assert has_mosquitto(), "mosquitto is not installed (make test installs it with apt-get)"
    spec = importlib.util.spec_from_file_location("live_external", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = {
        "receivers": 2,
        "delay_ms": DELAY_MS,
        "spacing_s": 0.5,
        "settle_s": 1.0,
        "quiet_s": 0.5,
        "keep": False,
        "frame_ms": ServerSettings().live_frame_ms,  # what the server sends unless told
        "send_ms": ServerSettings().live_send_ms,
        **kw,
    }
    result: dict[str, Any] = bench.run(argparse.Namespace(**args))
    print(result)
    return result


def test_two_agents_play_the_first_marker_together_at_the_playout_delay() -> None:
    out = _measure(seconds=6.0, stall_s=0.0)
    assert out["missing_markers"] <= 2  # this machine is shared: a hiccup may cost one
    # Aligned from the first marker, not after seconds of sliding at 2 ms/s.
    assert out["skew_first5"]["n"] >= 4 and out["skew_first5"]["max_ms"] <= 0.5
    latency = out["latency_beyond_delay_output_clock"]
    # Mouth to speaker close to the playout delay, not delay + 100 ms of hidden prefill (+117
    # ms before issue 12). Issue 12's +15 ms is met on a quiet machine (+2.2 ms, +2.7 ms)
    # but not under load (up to +41 ms): see docs/benchmarks.md.
    assert latency["p50_ms"] <= 45.0, latency


def test_a_first_word_after_the_first_audio_wait_still_plays_aligned_and_on_time() -> None:
    # The operator waits 3 s: the server's first-audio wait (2 s) ends and frames of
    # silence go out, stamped with the prefill as their age, before the audio flows with its
    # own measured age (a step of the stamps every device must take alike). 40 ms frames at
    # 1000 ms went wrong twice on this machine without a known cause (docs/benchmarks.md).
    out = _measure(seconds=6.0, stall_s=0.0, quiet_s=3.0, frame_ms=40, delay_ms=1000)
    assert out["missing_markers"] <= 2
    assert out["skew_first5"]["n"] >= 4 and out["skew_first5"]["max_ms"] <= 0.5
    latency = out["latency_beyond_delay_output_clock"]
    assert latency["min_ms"] >= -5.0 and latency["p50_ms"] <= 45.0, latency  # never early


def test_after_a_three_second_stall_the_backlog_is_dropped_not_played_late() -> None:
    out = _measure(seconds=15.0, stall_s=3.0)
    # The 3 s the source held back arrive at once: stale, dropped (most of it), counted.
    assert out["stale_backlog_markers"]["dropped"] >= out["receivers"] * 3
    after = out["latency_beyond_delay_2s_after_stall"]
    assert after is not None and after["max_ms"] is not None, after
    # Bounded (before issue 12 the whole backlog was played: +2 s for the rest of the
    # session). Issue 12's target is +15 ms; measured +76 to +121 ms so far: see
    # docs/benchmarks.md, "Live audio measured from outside".
    assert after["max_ms"] <= 250.0, after
