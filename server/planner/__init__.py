"""The planner: compiles each device's schedule, versions it and publishes it retained."""

from __future__ import annotations

from typing import Any

from server.db import utcnow
from server.planner.runner import Planner, PlanPublisher, note_replan_request

__all__ = ["PlanPublisher", "Planner", "request_replan"]


def request_replan(app: Any) -> None:
    """Ask for a new planning pass after a committed change (programmes, zones, devices).

    Works in every process: the leader plans at once; another process leaves a request in
    the database that the leader picks up at its next tick.
    """
    planner: Planner | None = getattr(app.state, "planner", None)
    if planner is not None:
        planner.request_replan()
        return
    clock = getattr(app.state, "clock", utcnow)
    note_replan_request(app.state.session_factory, now=clock())
