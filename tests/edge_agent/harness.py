"""Moved to loa_testkit/harness.py (bench/ uses it too); kept for importers not yet switched."""

from loa_testkit.harness import (
    ROOT,
    Observer,
    agent_env,
    eventually,
    finished,
    make_agent,
    new_device_id,
    observing,
    run,
    running,
    start_process,
    with_timeout,
)

__all__ = [
    "ROOT",
    "Observer",
    "agent_env",
    "eventually",
    "finished",
    "make_agent",
    "new_device_id",
    "observing",
    "run",
    "running",
    "start_process",
    "with_timeout",
]
