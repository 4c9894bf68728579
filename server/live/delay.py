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


def choose_playout_delay(reports: Iterable[tuple[str, float | None]]) -> DelayChoice:
    """Cover the slowest target: twice its 95th-percentile round trip plus the pipeline.

    One way is about half a round trip; the other half is the margin for that link's
    jitter (a 4G cell's queues), so a frame that was slow by a p95 round trip still plays.
    """
    known = [(uid, rtt) for uid, rtt in reports if rtt is not None and math.isfinite(rtt)]
    if not known:
        return DelayChoice(
            UNKNOWN_LINK_MS, f"no device has reported its link yet: {UNKNOWN_LINK_MS} ms"
        )
    uid, worst = max(known, key=lambda item: item[1])
    wanted = 2 * worst + PIPELINE_MS
    delay = int(min(MAX_AUTO_MS, max(MIN_AUTO_MS, math.ceil(wanted / STEP_MS) * STEP_MS)))
    basis = (
        f"slowest link {uid}: p95 round trip {worst:.0f} ms; 2 × {worst:.0f} + "
        f"{PIPELINE_MS} ms → {delay} ms ({len(known)} of the devices reported)"
    )
    return DelayChoice(delay, basis)
