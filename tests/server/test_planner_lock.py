"""The planner lock: PostgreSQL advisory lock or a file lock beside the SQLite database."""

from __future__ import annotations

import time

from server.db import make_engine
from server.planner.lock import PlannerLock


def test_only_one_holder_at_a_time(db_url: str) -> None:
    first_engine, second_engine = make_engine(db_url), make_engine(db_url)
    first, second = PlannerLock(first_engine), PlannerLock(second_engine)
    try:
        assert first.acquire() is True
        assert second.acquire() is False
        assert first.acquire() is True  # re-entrant for its holder
        assert first.still_held()
        first.release()
        assert second.acquire() is True
        assert PlannerLock(first_engine).acquire() is False
    finally:
        first.release()
        second.release()
        first_engine.dispose()
        second_engine.dispose()


def test_the_lock_dies_with_its_holder(db_url: str) -> None:
    engine = make_engine(db_url)
    holder = PlannerLock(engine)
    try:
        assert holder.acquire()
        # Closing the connection or file (as a crash would) frees the lock for the next one.
        if holder._conn is not None:
            holder._conn.invalidate()
            assert holder.still_held() is False
        else:
            assert holder._file is not None
            holder._file.close()
            holder._file = None
        follower = PlannerLock(make_engine(db_url))
        deadline = time.monotonic() + 10  # PostgreSQL frees it when the backend has exited
        while not follower.acquire() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert follower.held
        follower.release()
        follower.engine.dispose()
    finally:
        holder.release()
        engine.dispose()
