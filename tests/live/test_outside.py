"""Start alignment and stall recovery measured from outside (bench/live_external.py, 2 agents).

Real `loa-server serve`, `loa-server live --input -` and `loa-agent` processes; each agent
hands raw PCM to a FIFO as it plays, an epoll reader in this process stamps every read.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

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
        "keep": False,
        **kw,
    }
    result: dict[str, Any] = bench.run(argparse.Namespace(**args))
    print(result)
    return result


def test_two_agents_play_the_first_marker_together_at_the_playout_delay() -> None:
    out = _measure(seconds=6.0, stall_s=0.0)
    assert out["missing_markers"] == 0
    # Aligned from the first marker, not after seconds of sliding at 2 ms/s.
    assert out["skew_first5"]["n"] == 5 and out["skew_first5"]["max_ms"] <= 0.5
    latency = out["latency_beyond_delay_output_clock"]
    # Mouth to speaker = the playout delay (+ at most 15 ms), not delay + 100 ms of prefill.
    assert latency["min_ms"] >= -2.0 and latency["max_ms"] <= 15.0, latency


def test_after_a_three_second_stall_latency_is_back_within_two_seconds() -> None:
    out = _measure(seconds=12.0, stall_s=3.0)
    assert out["missing_markers"] == 0
    after = out["latency_beyond_delay_2s_after_stall"]
    assert after is not None and after["max_ms"] is not None and after["max_ms"] <= 15.0, after
