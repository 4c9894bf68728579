"""Live audio over the bad 4G link (issue 13, section 3, scenario 3), the 2-minute variant:
10 agents, each behind its own impaired link, a delay the server chose from their reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import requires_mosquitto

pytestmark = [requires_mosquitto, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
MINUTES = 2


def test_live_over_the_bad_link_two_minutes() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "field_link.py"), "--only", "live",
         "--minutes", str(MINUTES)],
        capture_output=True, text=True, check=True, timeout=420,
    )  # fmt: skip
    said, line = out.stdout.splitlines()
    print(line)  # the figures, shown when it fails
    result = json.loads(line)
    devices = result["per_device"]
    # The server chose the delay from what every device reported, and said so.
    assert len(devices) == 10 and not result["delay_overridden"]
    assert all(d["rtt_p95_ms"] for d in devices)
    slowest = max(d["rtt_p95_ms"] for d in devices)
    assert result["playout_delay_ms"] >= 2 * slowest, result["delay_basis"]
    assert "10 of the devices reported" in result["delay_basis"]
    assert said.startswith(f"live: the server chose {result['playout_delay_ms']} ms")
    # Every device played the session and counted its frames.
    assert all(d["outcome"] == "played" for d in devices)
    for d in devices:  # every slot is played, concealed or skipped (counted as dropped)
        total = d["played"] + d["concealed"] + d["dropped"]
        assert abs(total - result["frames_sent"]) <= 0.02 * result["frames_sent"], d
    # The bounds (<= 1 dropout per 10 minutes, skew p95 <= 1 ms) are NOT met yet
    # (issue 13 stays open; docs/benchmarks.md has the figures): a delay sized from the p95
    # probe round trip does not cover BAD_4G's 3 s stalls (one dropout per stall), and the
    # devices' clock estimates disagree by 3-5 ms over this link. What is asserted is that it
    # gets no worse: at most one link dropout per stall per device, skew p95 within 10 ms.
    figures = {k: result[k] for k in ("dropouts_per_10min_max", "dropouts_total",
               "dropouts_total_sink_dry", "skew_ms", "clock_error_ms_spread",
               "publisher_loop_lag_ms", "machine")}  # fmt: skip
    stalls = MINUTES  # BAD_4G stalls 3 s once a minute
    link_dropouts = result["dropouts_total"] - result["dropouts_total_sink_dry"]
    assert link_dropouts <= (stalls + 1) * len(devices), figures
    assert result["skew_ms"]["p95"] <= 10.0, figures
