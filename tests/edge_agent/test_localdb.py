"""The agent's SQLite store: schedule, sequence numbers, outbox, outcomes, downloads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.localdb import DB_FILE, LocalDb, LocalDbError, OnAir


def opened(path: Path) -> LocalDb:
    db = LocalDb(data_dir=path)
    db.open()
    return db


def event(item_id: str, outcome: str = "played") -> dict[str, object]:
    return {"kind": "play", "item_id": item_id, "planned_start": 1.0e9, "outcome": outcome}


def test_it_runs_in_wal_mode_and_keeps_the_schedule(tmp_path: Path) -> None:
    db = opened(tmp_path)
    assert db.schedule() is None
    db.save_schedule(version=3, document='{"v": 3}', applied_at=1.0)
    db.save_schedule(version=4, document='{"v": 4}', applied_at=2.0)
    db.close()
    with sqlite3.connect(tmp_path / DB_FILE) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert opened(tmp_path).schedule() == (4, '{"v": 4}')


def test_sequence_numbers_increase_across_restarts_and_acks(tmp_path: Path) -> None:
    db = opened(tmp_path)
    seqs = [
        db.record_outcome(item_id=f"i{n}", planned_start=1e9, event=event(f"i{n}"))
        for n in range(3)
    ]
    assert seqs == [1, 2, 3]
    db.acknowledge([1, 2, 3])
    assert db.outbox_size() == 0
    db.close()
    db = opened(tmp_path)  # a restart never reuses a sequence number, even with an empty outbox
    assert db.record_outcome(item_id="i9", planned_start=1e9, event=event("i9")) == 4
    rows = db.outbox(limit=10)
    assert rows == [{**event("i9"), "seq": 4}]
    assert db.finished_items() == {"i0", "i1", "i2", "i9"}


def test_only_acknowledged_events_leave_the_outbox(tmp_path: Path) -> None:
    db = opened(tmp_path)
    for n in range(5):
        db.record_outcome(item_id=f"i{n}", planned_start=1e9, event=event(f"i{n}"))
    db.acknowledge([2, 4, 99])
    assert [r["seq"] for r in db.outbox(limit=10)] == [1, 3, 5]
    assert [r["seq"] for r in db.outbox(limit=2)] == [1, 3]


def test_a_start_without_an_outcome_is_reported_as_interrupted(tmp_path: Path) -> None:
    db = opened(tmp_path)
    db.mark_started(item_id="a", event=event("a", "failed"))
    db.mark_started(item_id="b", event=event("b", "failed"))
    db.record_outcome(item_id="b", planned_start=1e9, event=event("b"))
    db.record_outcome(item_id="c", planned_start=1e9, event=event("c"))
    db.mark_started(item_id="c", event=event("c", "failed"))  # late marker after the outcome
    db.close()
    assert [e["item_id"] for e in opened(tmp_path).interrupted()] == ["a"]


def test_the_segment_on_air_survives_a_restart_until_its_item_has_an_outcome(
    tmp_path: Path,
) -> None:
    db = opened(tmp_path)
    assert db.on_air() is None
    db.mark_on_air(item_id="a", position_s=0.0, heard_at=100.0)
    db.mark_on_air(item_id="b", position_s=0.0, heard_at=101.0)  # one segment at a time
    db.mark_on_air(item_id="a", position_s=1.0, heard_at=102.0)  # a resumed after b
    db.close()
    db = opened(tmp_path)
    assert db.on_air() == OnAir("a", 1.0, 102.0)
    db.clear_on_air(item_id="b", heard_at=101.0)  # someone else's: a stays
    db.clear_on_air(item_id="a", heard_at=100.0)  # an earlier segment's, written late
    assert db.on_air() == OnAir("a", 1.0, 102.0)
    db.clear_on_air(item_id="a", heard_at=102.0)  # suspended
    assert db.on_air() is None
    db.mark_on_air(item_id="a", position_s=2.0, heard_at=103.0)
    db.record_outcome(item_id="a", planned_start=1e9, event=event("a"))
    assert db.on_air() is None
    db.mark_on_air(item_id="a", position_s=3.0, heard_at=104.0)  # a late marker after it
    assert db.on_air() is None


def test_ignored_items_count_as_finished_and_old_outcomes_are_pruned(tmp_path: Path) -> None:
    db = opened(tmp_path)
    db.mark_ignored([("old", 100.0), ("new", 5000.0)])
    db.record_outcome(item_id="x", planned_start=200.0, event=event("x"))
    assert db.finished_items() == {"old", "new", "x"}
    db.prune_outcomes(before=1000.0)
    assert db.finished_items() == {"new"}
    assert db.outbox_size() == 1  # pruning outcomes never drops unacknowledged events


def test_downloads_remember_their_chunks(tmp_path: Path) -> None:
    db = opened(tmp_path)
    sha = "ab" * 32
    db.start_download(sha256=sha, chunk_count=5)
    for index in (0, 3, 3):
        db.add_chunk(sha256=sha, index=index)
    db.close()
    db = opened(tmp_path)
    [row] = db.downloads()
    assert (row.sha256, row.chunk_count, row.received) == (sha, 5, frozenset({0, 3}))
    db.start_download(sha256=sha, chunk_count=7)  # a restart from nothing
    assert db.downloads()[0].received == frozenset()
    db.add_clip(sha256=sha, size=10, now=1.0, pinned=True)
    assert db.downloads() == []
    assert [(c.sha256, c.size, c.pinned) for c in db.clips()] == [(sha, 10, True)]


def test_an_unusable_database_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"this is not a database" * 100)
    with pytest.raises(LocalDbError, match="cannot open the local database"):
        opened(tmp_path)
