"""Sign-in attempt limiting per (username, client address), counted in the shared database.

Atomic without locks on SQLite and PostgreSQL: an attempt first commits a row for its key,
then counts the key's rows in the window. Of any `max_failures + 1` concurrent attempts the
last to commit its row counts all of them and is refused, so no more than `max_failures`
passwords are ever evaluated per window, whichever server process each attempt reached.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from server.access.models import LoginAttempt
from server.db import session_scope

SessionFactory = sessionmaker[Session]


def attempt_key(*, username: str, ip: str) -> str:
    """The stored key: case-insensitive username and the client address, hashed."""
    return hashlib.sha256(f"{username.lower()}\x00{ip}".encode()).hexdigest()


class LoginLimiter:
    """At most `max_failures` failed sign-ins per key within `window_s` seconds."""

    def __init__(
        self,
        *,
        max_failures: int,
        window_s: float,
        clock: Callable[[], float] = time.time,
        prune_every_s: float = 60.0,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock  # wall clock: every process must agree on it
        self.prune_every_s = prune_every_s
        self._pruned_at = -math.inf
        self._prune_lock = threading.Lock()

    def begin(self, factory: SessionFactory, *, username: str, ip: str) -> int:
        """Register an attempt before the password is checked: 0 = go on, else seconds to wait.

        The attempt's row stays when the password is wrong (that is the failure counted);
        call `succeeded` when it is right.
        """
        key = attempt_key(username=username, ip=ip)
        now = self.clock()
        cutoff = now - self.window_s
        with session_scope(factory) as db:
            # The key's own expired rows go in the same short write (the index covers it).
            db.execute(
                delete(LoginAttempt).where(LoginAttempt.key == key, LoginAttempt.at <= cutoff)
            )
            row = LoginAttempt(key=key, at=now)
            db.add(row)
            db.flush()
            row_id = row.id
        # A new transaction, after our row is committed: it sees every attempt committed before.
        with session_scope(factory) as db:
            stamps = list(
                db.scalars(
                    select(LoginAttempt.at)
                    .where(LoginAttempt.key == key, LoginAttempt.at > cutoff)
                    .where(LoginAttempt.id != row_id)
                    .order_by(LoginAttempt.at)
                )
            )
            if len(stamps) < self.max_failures:
                wait = 0
            else:
                db.execute(delete(LoginAttempt).where(LoginAttempt.id == row_id))
                # Allowed again once enough of the others have left the window.
                freed_at = stamps[len(stamps) - self.max_failures] + self.window_s
                wait = max(1, math.ceil(freed_at - now))
        self._prune(factory, cutoff=cutoff, now=now)
        return wait

    def succeeded(self, factory: SessionFactory, *, username: str, ip: str) -> None:
        """A successful sign-in clears the key's failures."""
        key = attempt_key(username=username, ip=ip)
        with session_scope(factory) as db:
            db.execute(delete(LoginAttempt).where(LoginAttempt.key == key))

    def recent(self, factory: SessionFactory, *, username: str, ip: str) -> int:
        """How many attempts the key has in the window (failed or in flight)."""
        key = attempt_key(username=username, ip=ip)
        with session_scope(factory) as db:
            count = db.scalar(
                select(func.count())
                .select_from(LoginAttempt)
                .where(LoginAttempt.key == key, LoginAttempt.at > self.clock() - self.window_s)
            )
        return int(count or 0)

    def _prune(self, factory: SessionFactory, *, cutoff: float, now: float) -> None:
        """Forget every key's expired rows, at most once per `prune_every_s` per process."""
        with self._prune_lock:
            if now - self._pruned_at < self.prune_every_s:
                return
            self._pruned_at = now
        with session_scope(factory) as db:
            db.execute(delete(LoginAttempt).where(LoginAttempt.at <= cutoff))


def too_many_attempts_detail(seconds: int) -> str:
    """The 429 answer, in Vietnamese and English (the console and the API show the same)."""
    minutes = max(1, math.ceil(seconds / 60))
    return (
        f"Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau {minutes} phút. / "
        f"Too many failed sign-ins. Try again in {minutes} minute(s)."
    )
