"""Keep credentials out of log lines: uvicorn writes request paths with their query strings."""

from __future__ import annotations

import logging
import re

_SECRET = re.compile(r"((?:access_)?token=)[^&\s\"']+", re.IGNORECASE)
LOGGERS = ("uvicorn.access", "uvicorn.error")


class RedactTokens(logging.Filter):
    """Rewrites `token=…` in a record's message and arguments to `token=[redacted]`."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact in place; never drops a record."""
        if isinstance(record.msg, str):
            record.msg = _SECRET.sub(r"\1[redacted]", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRET.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args
            )
        return True


def install() -> None:
    """Add the filter to uvicorn's loggers once (an old client may still send ?token=)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
