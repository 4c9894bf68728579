"""The live-session table shared by all server processes (blocking calls: run in a thread).

The process that runs a session writes its row on start, about once a second while it runs
and once more when it ends. Any other process lists those rows and records a stop request
that the owner polls for. A running row whose owner stopped writing long ago (the process
died) is shown as ended.

The owner's periodic call, `sync` (once a second: the refresh and the stop-request poll in
one transaction and one thread hop), skips the ORM: through a session each part cost 1-1.2
ms of CPU on the bench machine, and polling four times a second apart from the refresh was
a tenth of a live stream's server CPU (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from server.db import session_scope
from server.live.models import LiveSessionRow
from server.live.schemas import LiveSessionOut

STALE_S = 15.0  # a running row not refreshed for this long belongs to a dead process
KEEP_S = 24 * 3600.0  # rows older than this are deleted
LISTED_ENDED = 50  # ended sessions of other processes still listed
DEAD_OWNER = "the server process running it stopped answering"


@dataclass(frozen=True)
class Entry:
    """One session to write: its id, who may see it, its view."""

    id: str
    org_unit_ids: frozenset[int]
    view: LiveSessionOut


@dataclass(frozen=True)
class Remote:
    """A session as read from the table."""

    id: str
    owner: str
    org_unit_ids: frozenset[int]
    view: LiveSessionOut
    stop_requested: str | None

    def visible_to(self, reach: frozenset[int] | None) -> bool:
        """The same rule as for sessions in memory: one targeted zone in the user's subtree."""
        return reach is None or bool(self.org_unit_ids & reach)


_STOP_REQUESTS = select(LiveSessionRow.id, LiveSessionRow.stop_requested).where(
    LiveSessionRow.owner == bindparam("owner"),
    LiveSessionRow.state == "running",
    LiveSessionRow.stop_requested.is_not(None),
)


def save(factory: sessionmaker[Session], *, owner: str, entries: list[Entry], now: float) -> None:
    """Insert or refresh the rows of this owner's sessions (one transaction).

    A new session's insert also deletes every row older than KEEP_S (of any owner).
    """
    if not entries:
        return
    with factory.kw["bind"].begin() as conn:
        _write(conn, owner=owner, entries=entries, now=now)


def _write(conn: Connection, *, owner: str, entries: list[Entry], now: float) -> None:
    """Update each entry's row, or insert it (pruning rows older than KEEP_S first)."""
    for e in entries:
        values = {
            "org_unit_ids": sorted(e.org_unit_ids),
            "view": e.view.model_dump(mode="json"),
            "state": e.view.state,
            "updated_at": now,
        }
        done = conn.execute(update(LiveSessionRow).where(LiveSessionRow.id == e.id).values(values))
        if done.rowcount == 0:
            conn.execute(delete(LiveSessionRow).where(LiveSessionRow.updated_at < now - KEEP_S))
            row = {"id": e.id, "owner": owner, "stop_requested": None, **values}
            conn.execute(insert(LiveSessionRow).values(row))


def sync(
    factory: sessionmaker[Session], *, owner: str, entries: list[Entry], now: float
) -> dict[str, str]:
    """Refresh this owner's rows (as `save`) and read its stop requests, in one transaction."""
    with factory.kw["bind"].begin() as conn:  # Core, cached statements: no ORM session
        _write(conn, owner=owner, entries=entries, now=now)
        rows = conn.execute(_STOP_REQUESTS, {"owner": owner}).all()
    return {str(sid): str(reason) for sid, reason in rows}


def request_stop(factory: sessionmaker[Session], *, session_id: str, reason: str) -> None:
    """Ask the owner to stop the session (the first request's reason wins)."""
    with session_scope(factory) as db:
        db.execute(
            update(LiveSessionRow)
            .where(LiveSessionRow.id == session_id, LiveSessionRow.stop_requested.is_(None))
            .values(stop_requested=reason[:200])
        )


def load(factory: sessionmaker[Session], *, session_id: str, now: float) -> Remote | None:
    """One session's row, or None."""
    with session_scope(factory) as db:
        row = db.get(LiveSessionRow, session_id)
        return _remote(row, now) if row is not None else None


def others(factory: sessionmaker[Session], *, owner: str, now: float) -> list[Remote]:
    """Every other owner's sessions."""
    with session_scope(factory) as db:
        rows = db.scalars(select(LiveSessionRow).where(LiveSessionRow.owner != owner)).all()
        return [_remote(r, now) for r in rows]


def _remote(row: LiveSessionRow, now: float) -> Remote:
    data: dict[str, Any] = dict(row.view)
    if row.state == "running" and now - row.updated_at > STALE_S:
        data.update(state="ended", end_reason=DEAD_OWNER, ended_at=row.updated_at)
    return Remote(
        id=row.id,
        owner=row.owner,
        org_unit_ids=frozenset(int(i) for i in row.org_unit_ids),
        view=LiveSessionOut.model_validate(data),
        stop_requested=row.stop_requested,
    )
