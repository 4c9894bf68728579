"""Answers to NTP-style clock probes: the server clock at receipt (t1) and at send (t2)."""

from __future__ import annotations

import time
from collections.abc import Callable

from protocol import TimeRequest, TimeResponse


def answer_time_request(
    request: TimeRequest, *, received_at: float, clock: Callable[[], float] = time.time
) -> TimeResponse:
    """The response to a probe; t2 is read last, just before the caller publishes it."""
    return TimeResponse(id=request.id, t0=request.t0, t1=received_at, t2=clock())
