"""Take a CAP message in once, also when two posts of the same one race.

The unique (sender, identifier) of cap_messages decides the race; the loser's whole intake
(its clip, bulletin, programmes, events) is one SAVEPOINT, rolled back when its row is
refused, after which it answers with what the winner made.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from server.events.outbox import PENDING_KEY


def take_write_lock(db: Session) -> None:
    """On SQLite, start the transaction holding the write lock (waiting, as any write waits).

    pysqlite sends no BEGIN before a SAVEPOINT, so the savepoint would open a deferred
    transaction whose read snapshot cannot take the write lock once another writer committed
    ("database is locked"). Taken here, after the network fetch: writers wait for the TTS and
    the clip's normalisation only, as they do for a text-only bulletin's. Holding it also
    serialises two posts of one alert, so the second finds the first's row before writing.
    """
    conn = db.connection()
    if conn.dialect.name != "sqlite":
        return
    raw = conn.connection.dbapi_connection
    if not getattr(raw, "in_transaction", True):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def savepoint(db: Session) -> Iterator[None]:
    """A SAVEPOINT whose events leave with the request's commit, and never if rolled back.

    SQLAlchemy fires after_commit (the dispatcher's cue) also when a savepoint is released and
    after_soft_rollback when one is rolled back: the session's pending outbox rows are held
    aside meanwhile, so neither is dispatched before the commit nor forgotten by a rollback.
    """
    outer = db.info.pop(PENDING_KEY, [])
    try:
        with db.begin_nested():
            yield
            inner = db.info.pop(PENDING_KEY, [])  # before the release fires after_commit
    except BaseException:
        db.info[PENDING_KEY] = outer  # the rolled-back rows are gone; the earlier ones stay
        raise
    db.info[PENDING_KEY] = outer + inner
