"""The agent's local SQLite database: schedule, clip index, downloads, outcomes and outbox.

Every method blocks (SQLite on an SD card), so async code calls them through
asyncio.to_thread. One connection is shared by the worker threads behind a lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_FILE = "agent.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schedule (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    document TEXT NOT NULL,
    applied_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS clips (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    last_used REAL NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS downloads (
    sha256 TEXT PRIMARY KEY,
    chunk_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS download_chunks (
    sha256 TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (sha256, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    item_id TEXT PRIMARY KEY,
    outcome TEXT NOT NULL,
    planned_start REAL NOT NULL,
    seq INTEGER
);
CREATE TABLE IF NOT EXISTS started (
    item_id TEXT PRIMARY KEY,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS on_air (
    item_id TEXT PRIMARY KEY,
    position_s REAL NOT NULL,
    heard_at REAL NOT NULL
);
"""


class LocalDbError(Exception):
    """The local database cannot be opened or used; the message says what to check."""


@dataclass(frozen=True)
class ClipRow:
    """One verified clip in the index."""

    sha256: str
    size: int
    last_used: float
    pinned: bool


@dataclass(frozen=True)
class OnAir:
    """The segment last heard: an item from `position_s` on, since server time `heard_at`."""

    item_id: str
    position_s: float
    heard_at: float


@dataclass(frozen=True)
class DownloadRow:
    """A clip being reassembled: its chunk count and the chunk indexes already on disk."""

    sha256: str
    chunk_count: int
    received: frozenset[int]


class LocalDb:
    """SQLite in WAL mode under the data directory."""

    def __init__(self, *, data_dir: Path) -> None:
        self.path = data_dir / DB_FILE
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._durable: bool | None = None

    def open(self) -> None:
        """Create or open the database (idempotent)."""
        with self._lock:
            if self._conn is not None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise LocalDbError(
                    f"cannot open the local database {self.path} ({exc}); check that the data "
                    "partition is writable and not full, or move the damaged file away"
                ) from None
            self._conn = conn

    def close(self) -> None:
        """Close the connection (safe to repeat)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def _tx(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction; durable ones fsync the WAL at commit (outbox, schedule)."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise LocalDbError("the local database is not open")
            if durable != self._durable:
                # Chunk bookkeeping is frequent and re-fetchable: no fsync per chunk.
                conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._durable = durable
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- schedule ---------------------------------------------------------------------------

    def schedule(self) -> tuple[int, str] | None:
        """(version, document JSON) of the held schedule, or None."""
        with self._tx() as c:
            row = c.execute("SELECT version, document FROM schedule WHERE id = 1").fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def save_schedule(self, *, version: int, document: str, applied_at: float) -> None:
        """Replace the held schedule (the caller has checked that the version moves forward)."""
        with self._tx(durable=True) as c:
            c.execute(
                "INSERT INTO schedule (id, version, document, applied_at) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET version = excluded.version, "
                "document = excluded.document, applied_at = excluded.applied_at",
                (version, document, applied_at),
            )

    # -- clip index -------------------------------------------------------------------------

    def clips(self) -> list[ClipRow]:
        """Every verified clip."""
        with self._tx() as c:
            rows = c.execute("SELECT sha256, size, last_used, pinned FROM clips").fetchall()
        return [ClipRow(r[0], int(r[1]), float(r[2]), bool(r[3])) for r in rows]

    def add_clip(self, *, sha256: str, size: int, now: float, pinned: bool) -> None:
        """Index a verified clip (replaces a previous row) and forget its download."""
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO clips (sha256, size, last_used, pinned) "
                "VALUES (?, ?, ?, ?)",
                (sha256, size, now, int(pinned)),
            )
            c.execute("DELETE FROM download_chunks WHERE sha256 = ?", (sha256,))
            c.execute("DELETE FROM downloads WHERE sha256 = ?", (sha256,))

    def remove_clips(self, shas: Iterable[str]) -> None:
        """Drop clips from the index."""
        with self._tx() as c:
            c.executemany("DELETE FROM clips WHERE sha256 = ?", [(s,) for s in shas])

    def set_pinned(self, shas: Iterable[str]) -> None:
        """Pin exactly these clips (the current schedule's manifest); unpin the rest."""
        with self._tx() as c:
            c.execute("UPDATE clips SET pinned = 0")
            c.executemany("UPDATE clips SET pinned = 1 WHERE sha256 = ?", [(s,) for s in shas])

    def touch_clip(self, sha256: str, *, now: float) -> None:
        """Mark a clip as used now (least-recently-used eviction)."""
        with self._tx() as c:
            c.execute("UPDATE clips SET last_used = ? WHERE sha256 = ?", (now, sha256))

    # -- downloads --------------------------------------------------------------------------

    def downloads(self) -> list[DownloadRow]:
        """Every clip being reassembled, with the chunks already written."""
        with self._tx() as c:
            heads = c.execute("SELECT sha256, chunk_count FROM downloads").fetchall()
            got: dict[str, set[int]] = {}
            for sha, idx in c.execute("SELECT sha256, idx FROM download_chunks"):
                got.setdefault(sha, set()).add(int(idx))
        return [DownloadRow(s, int(n), frozenset(got.get(s, ()))) for s, n in heads]

    def start_download(self, *, sha256: str, chunk_count: int) -> None:
        """Begin (or restart from nothing) the download of a clip."""
        with self._tx() as c:
            c.execute("DELETE FROM download_chunks WHERE sha256 = ?", (sha256,))
            c.execute(
                "INSERT OR REPLACE INTO downloads (sha256, chunk_count) VALUES (?, ?)",
                (sha256, chunk_count),
            )

    def add_chunk(self, *, sha256: str, index: int) -> None:
        """Record that a chunk's bytes are in the temp file (written before this call)."""
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO download_chunks (sha256, idx) VALUES (?, ?)", (sha256, index)
            )

    def drop_download(self, sha256: str) -> None:
        """Forget a download (finished, corrupt or no longer wanted)."""
        with self._tx() as c:
            c.execute("DELETE FROM download_chunks WHERE sha256 = ?", (sha256,))
            c.execute("DELETE FROM downloads WHERE sha256 = ?", (sha256,))

    # -- outcomes and the outbox ------------------------------------------------------------

    def record_outcome(self, *, item_id: str, planned_start: float, event: dict[str, Any]) -> int:
        """Store an item's outcome and its event in the outbox at once; return the new seq."""
        with self._tx(durable=True) as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            seq = (int(row[0]) if row else 0) + 1
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (str(seq),)
            )
            c.execute(
                "INSERT INTO outbox (seq, event) VALUES (?, ?)",
                (seq, json.dumps({**event, "seq": seq})),
            )
            c.execute(
                "INSERT OR REPLACE INTO outcomes (item_id, outcome, planned_start, seq) "
                "VALUES (?, ?, ?, ?)",
                (item_id, event["outcome"], planned_start, seq),
            )
            c.execute("DELETE FROM started WHERE item_id = ?", (item_id,))
            c.execute("DELETE FROM on_air WHERE item_id = ?", (item_id,))
        return seq

    def record_event(self, *, event: dict[str, Any]) -> int:
        """Put a device event (protocol.DeviceEvent, without its seq) in the outbox; its seq."""
        with self._tx(durable=True) as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            seq = (int(row[0]) if row else 0) + 1
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (str(seq),)
            )
            c.execute(
                "INSERT INTO outbox (seq, event) VALUES (?, ?)",
                (seq, json.dumps({**event, "seq": seq})),
            )
        return seq

    def mark_ignored(self, items: Iterable[tuple[str, float]]) -> None:
        """Items that were over before this device ever held them: never played nor reported."""
        with self._tx() as c:
            c.executemany(
                "INSERT OR IGNORE INTO outcomes (item_id, outcome, planned_start, seq) "
                "VALUES (?, 'ignored', ?, NULL)",
                list(items),
            )

    def finished_items(self) -> set[str]:
        """Item ids that have an outcome (or were ignored)."""
        with self._tx() as c:
            return {r[0] for r in c.execute("SELECT item_id FROM outcomes")}

    def prune_outcomes(self, *, before: float) -> None:
        """Forget outcomes of items planned before `before` (they can no longer recur)."""
        with self._tx() as c:
            c.execute("DELETE FROM outcomes WHERE planned_start < ?", (before,))

    def mark_started(self, *, item_id: str, event: dict[str, Any]) -> None:
        """Remember that an item started, so a crash mid-playback is reported after restart."""
        with self._tx(durable=True) as c:
            # An outcome recorded first (a very short item) must not leave a stray marker.
            c.execute(
                "INSERT OR IGNORE INTO started (item_id, event) SELECT ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM outcomes WHERE item_id = ?)",
                (item_id, json.dumps(event), item_id),
            )

    def interrupted(self) -> list[dict[str, Any]]:
        """Events of items that started but have no outcome (the agent died while playing)."""
        with self._tx() as c:
            rows = c.execute("SELECT event FROM started ORDER BY item_id").fetchall()
        return [dict(json.loads(r[0])) for r in rows]

    def mark_on_air(self, *, item_id: str, position_s: float, heard_at: float) -> None:
        """Remember the segment heard now (one at a time), so a restart rejoins it in step."""
        with self._tx(durable=True) as c:
            c.execute("DELETE FROM on_air")
            c.execute(
                "INSERT INTO on_air (item_id, position_s, heard_at) SELECT ?, ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM outcomes WHERE item_id = ?)",
                (item_id, position_s, heard_at, item_id),
            )

    def clear_on_air(self, *, item_id: str, heard_at: float) -> None:
        """That segment stopped without an outcome (suspended); a later one's row stays."""
        with self._tx(durable=True) as c:
            c.execute("DELETE FROM on_air WHERE item_id = ? AND heard_at = ?", (item_id, heard_at))

    def on_air(self) -> OnAir | None:
        """The segment that was being heard when the agent stopped, if any."""
        with self._tx() as c:
            row = c.execute("SELECT item_id, position_s, heard_at FROM on_air").fetchone()
        return None if row is None else OnAir(str(row[0]), float(row[1]), float(row[2]))

    def outbox(self, *, limit: int) -> list[dict[str, Any]]:
        """The oldest unacknowledged events, oldest first."""
        with self._tx() as c:
            rows = c.execute("SELECT event FROM outbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [dict(json.loads(r[0])) for r in rows]

    def outbox_size(self) -> int:
        """How many events wait for the server's acknowledgement."""
        with self._tx() as c:
            return int(c.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def acknowledge(self, seqs: Iterable[int]) -> None:
        """Drop events the server has stored."""
        with self._tx(durable=True) as c:
            c.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def meta(self, key: str) -> str | None:
        """A stored setting of the agent's own (the self-test's baseline), or None."""
        with self._tx() as c:
            row = c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting of the agent's own (durably: a baseline must survive a crash)."""
        with self._tx(durable=True) as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def last_seq(self) -> int:
        """The last sequence number handed out (0 before the first)."""
        with self._tx() as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0
