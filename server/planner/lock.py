"""One planner per database: a PostgreSQL advisory lock, or a file lock beside SQLite."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

# "LOAPLAN" as a number: the advisory-lock key every Loa planner competes for.
ADVISORY_KEY = int.from_bytes(b"LOAPLAN", "big")
# pg_locks shows a bigint advisory key as two 32-bit halves (classid high, objid low).
_HELD = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND pid = pg_backend_pid() AND classid = :high AND objid = :low AND objsubid = 1)"
)


def _held_params() -> dict[str, int]:
    return {"high": ADVISORY_KEY >> 32, "low": ADVISORY_KEY & 0xFFFFFFFF}


class PlannerLock:
    """Held for the life of the leading process; the database releases it if we die."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._conn is not None or self._file is not None

    def lock_path(self) -> Path | None:
        """The lock file for a SQLite database file (None for an in-memory database)."""
        database = self.engine.url.database
        if not database or database == ":memory:":
            return None
        return Path(f"{database}.planner.lock")

    def acquire(self) -> bool:
        """Try to take the lock without waiting; True when this process is now the planner."""
        if self.held:
            return True
        if self.engine.dialect.name == "postgresql":
            return self._acquire_advisory()
        return self._acquire_file()

    def _acquire_advisory(self) -> bool:
        # A dedicated connection, never returned to the pool: the lock lives as long as it.
        conn = self.engine.connect()
        try:
            got = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
            )
            conn.commit()  # a session-level advisory lock outlives the transaction
        except SQLAlchemyError:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def _acquire_file(self) -> bool:
        path = self.lock_path()
        if path is None:
            self._file = open(os.devnull, "rb")  # noqa: SIM115 - only one in-memory planner
            return True
        handle = open(path, "ab")  # noqa: SIM115 - held open for the process lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def still_held(self) -> bool:
        """False when the lock connection died (the database then released the lock)."""
        if self._conn is None:
            return self._file is not None
        try:
            # Asked of the server, not assumed: a silently re-opened connection holds nothing.
            held = bool(self._conn.execute(_HELD, _held_params()).scalar())
            self._conn.commit()
        except SQLAlchemyError:
            held = False
        if not held:
            log.warning("planner lost its database lock (the connection was lost)")
            self.release()
        return held

    def release(self) -> None:
        """Give the lock up (another process may then become the planner)."""
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                self._conn.commit()
            with contextlib.suppress(SQLAlchemyError):
                self._conn.close()
            self._conn = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
