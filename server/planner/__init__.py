"""The planner: compiles each device's schedule, versions it and publishes it retained."""

from server.planner.runner import Planner, PlanPublisher, note_replan_request

__all__ = ["PlanPublisher", "Planner", "note_replan_request"]
