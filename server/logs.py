"""Server logging: one line per event worth reading; routine ticks only at DEBUG.

APScheduler reports every job run at INFO ("Running job ...", "... executed successfully"):
with the planner ticking every 15 s that buries what an operator needs (sign-ins, errors).
Those records are demoted to DEBUG here, so LOA_LOG_LEVEL=DEBUG still shows them.
"""

from __future__ import annotations

import logging
import os

ROUTINE_LOGGERS = ("apscheduler.executors.", "apscheduler.scheduler")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class DemoteRoutine(logging.Filter):
    """On a handler: INFO records of routine loggers become DEBUG (dropped unless DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.name.startswith(ROUTINE_LOGGERS):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def configure_logging(level: str | None = None) -> int:
    """Root logging at LOA_LOG_LEVEL (default INFO), routine loggers demoted; the level."""
    name = (level or os.environ.get("LOA_LOG_LEVEL") or "INFO").upper()
    value = logging.getLevelNamesMapping().get(name, logging.INFO)
    root = logging.getLogger()
    logging.basicConfig(level=value, format=FORMAT)
    root.setLevel(value)
    for handler in root.handlers:
        if not any(isinstance(f, DemoteRoutine) for f in handler.filters):
            handler.addFilter(DemoteRoutine())
    return value
