"""Choosing a live session's playout delay from the links its devices report."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

# Encoding, the jitter buffer's own frame, decoding and the sink's buffer (measured ~60 ms,
# rounded up): what the delay must cover on top of the trip to the slowest device.
PIPELINE_MS = 100
MIN_AUTO_MS = 200  # a LAN still gets room for a hiccup
MAX_AUTO_MS = 5000  # the API's upper bound
UNKNOWN_LINK_MS = 500  # no device has reported its link yet: the old default
STEP_MS = 50  # rounded up so that small changes in the reports do not move it


@dataclass(frozen=True)
class DelayChoice:
    """The delay the server chose and what it rests on, in words for the operator."""

    delay_ms: int
    basis: str


def choose_playout_delay(
    reports: Iterable[tuple[str, float | None]],
    longest: Iterable[tuple[str, float | None]] = (),
) -> DelayChoice:
    """Cover the slowest target: its jitter and its stalls, plus the pipeline.

    Jitter: twice the 95th-percentile round trip (one way is about half a round trip; the
    other half is the margin for that link's queues). Stalls: a 4G hand-over holds
    everything for seconds, and a frame caught at its start arrives the stall plus a trip
    late; the longest recent round trip (`longest`, per device) is at least that, as the
    devices keep probing through it. A p95 never sees a stall (a few seconds a minute), so
    sizing from it alone cost one dropout per hand-over (bench/field_link.py live).
    """
    known = _usable(reports)
    if not known:
        return DelayChoice(
            UNKNOWN_LINK_MS, f"no device has reported its link yet: {UNKNOWN_LINK_MS} ms"
        )
    uid, worst = max(known, key=lambda item: item[1])
    wanted = 2 * worst + PIPELINE_MS
    why = f"slowest link {uid}: p95 round trip {worst:.0f} ms; 2 × {worst:.0f} + {PIPELINE_MS} ms"
    stalls = _usable(longest)
    if stalls:
        stall_uid, stall = max(stalls, key=lambda item: item[1])
        if stall + PIPELINE_MS > wanted:
            wanted = stall + PIPELINE_MS
            why = (
                f"longest recent round trip {stall:.0f} ms (a stall) on {stall_uid}; "
                f"{stall:.0f} + {PIPELINE_MS} ms"
            )
    delay = int(min(MAX_AUTO_MS, max(MIN_AUTO_MS, math.ceil(wanted / STEP_MS) * STEP_MS)))
    return DelayChoice(delay, f"{why} → {delay} ms ({len(known)} of the devices reported)")


def _usable(reports: Iterable[tuple[str, float | None]]) -> list[tuple[str, float]]:
    return [(uid, rtt) for uid, rtt in reports if rtt is not None and math.isfinite(rtt)]
