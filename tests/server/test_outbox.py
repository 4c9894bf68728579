"""The outbox: events leave only after their transaction commits, and none is lost on a crash."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from protocol import Command, Message, TopicKind
from server.db import make_engine, make_session_factory, session_scope
from server.events.dispatch import Dispatcher
from server.events.models import OutboxEvent
from server.events.outbox import LEASE, emit
from server.events.types import AclChanged, ReplanNeeded, command_issued
from server.migrate import upgrade

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


class Clock:
    """An injected clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """Records what the dispatcher hands on: commands, broker writes, replan requests."""

    def __init__(self) -> None:
        self.published: list[tuple[TopicKind, str, Message]] = []
        self.broker_writes = 0
        self.replans = 0
        self.fail_next = 0

    def publish(self, kind: TopicKind, device_uid: str, message: Message) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker unreachable")
        self.published.append((kind, device_uid, message))

    def write(self, db: Session) -> None:
        assert db.scalar(select(func.count()).select_from(OutboxEvent)) is not None
        self.broker_writes += 1

    def request_replan(self) -> None:
        self.replans += 1


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def make_dispatcher(factory: sessionmaker[Session], rec: Recorder, clock: Clock) -> Dispatcher:
    return Dispatcher(session_factory=factory, clock=clock, outlet=rec, broker=rec, replanner=rec)


def tone(command_id: str) -> Command:
    return Command(
        id=command_id, name="test_tone", expires_at=(T0 + timedelta(minutes=1)).timestamp()
    )


def pending(factory: sessionmaker[Session]) -> int:
    with session_scope(factory) as db:
        return (
            db.scalar(
                select(func.count()).select_from(OutboxEvent).where(OutboxEvent.done_at.is_(None))
            )
            or 0
        )


def test_events_leave_after_commit_coalesced(factory: sessionmaker[Session]) -> None:
    rec, clock = Recorder(), Clock()
    dispatcher = make_dispatcher(factory, rec, clock)
    dispatcher.attach()
    try:
        with session_scope(factory) as db:
            emit(db, AclChanged(), ReplanNeeded(reason="a"), ReplanNeeded(reason="b"))
            emit(db, AclChanged(), command_issued("loa-x", tone("c1")))
            db.flush()
            assert (rec.broker_writes, rec.replans, rec.published) == (0, 0, [])  # not yet
        # One commit: the broker files are written once and the planner asked once.
        assert (rec.broker_writes, rec.replans) == (1, 1)
        assert [(k, uid, m.id) for k, uid, m in rec.published] == [
            (TopicKind.COMMAND, "loa-x", "c1")
        ]
        assert pending(factory) == 0
    finally:
        dispatcher.detach()


def test_rolled_back_events_never_leave(factory: sessionmaker[Session]) -> None:
    rec, clock = Recorder(), Clock()
    dispatcher = make_dispatcher(factory, rec, clock)
    dispatcher.attach()
    try:
        with pytest.raises(RuntimeError), session_scope(factory) as db:
            emit(db, ReplanNeeded(reason="refused change"))
            db.flush()
            raise RuntimeError("the use case refused")
        with session_scope(factory) as db:
            db.execute(select(1))  # a later commit on the same factory dispatches nothing
        assert rec.replans == 0 and pending(factory) == 0
        assert dispatcher.sweep() == 0
    finally:
        dispatcher.detach()


def test_savepoints_neither_send_early_nor_forget_the_outer_events(
    factory: sessionmaker[Session],
) -> None:
    rec, clock = Recorder(), Clock()
    dispatcher = make_dispatcher(factory, rec, clock)
    dispatcher.attach()
    try:
        with session_scope(factory) as db:
            emit(db, ReplanNeeded(reason="outer"))
            with db.begin_nested():  # released: SQLAlchemy fires after_commit here
                emit(db, AclChanged())
            assert (rec.replans, rec.broker_writes) == (0, 0)  # nothing leaves before the commit
            with pytest.raises(RuntimeError), db.begin_nested():
                emit(db, command_issued("loa-x", tone("gone")))
                db.flush()
                raise RuntimeError("the savepoint's work is refused")
            assert (rec.replans, rec.broker_writes) == (0, 0)
        # The commit sends the outer and the released savepoint's events, not the rolled-back one.
        assert (rec.replans, rec.broker_writes, rec.published) == (1, 1, [])
        assert pending(factory) == 0
        assert dispatcher.sweep() == 0
    finally:
        dispatcher.detach()


def test_process_dying_after_commit_loses_nothing(factory: sessionmaker[Session]) -> None:
    rec, clock = Recorder(), Clock()
    # No dispatcher attached: the process "dies" between the commit and the dispatch.
    with session_scope(factory) as db:
        emit(db, command_issued("loa-y", tone("c2")), ReplanNeeded(reason="approved"))
    assert pending(factory) == 2
    restarted = make_dispatcher(factory, rec, clock)
    assert restarted.sweep() == 2
    assert rec.replans == 1 and [m.id for _, _, m in rec.published] == ["c2"]
    assert restarted.sweep() == 0 and pending(factory) == 0


def test_a_failed_dispatch_is_retried_after_the_lease(factory: sessionmaker[Session]) -> None:
    rec, clock = Recorder(), Clock()
    dispatcher = make_dispatcher(factory, rec, clock)
    dispatcher.attach()
    try:
        rec.fail_next = 1
        with session_scope(factory) as db:
            emit(db, command_issued("loa-z", tone("c3")))
        assert rec.published == [] and pending(factory) == 1
        assert dispatcher.sweep() == 0  # still leased to the failed attempt
        clock.now += LEASE + timedelta(seconds=1)
        assert dispatcher.sweep() == 1
        assert [m.id for _, _, m in rec.published] == ["c3"]
    finally:
        dispatcher.detach()


def test_two_dispatchers_never_run_an_event_twice(factory: sessionmaker[Session]) -> None:
    rec, clock = Recorder(), Clock()
    with session_scope(factory) as db:
        emit(db, *(command_issued("loa-w", tone(f"k{i}")) for i in range(40)))
    first, second = make_dispatcher(factory, rec, clock), make_dispatcher(factory, rec, clock)
    counts: list[int] = []

    def run(d: Dispatcher) -> None:
        counts.append(d.sweep())

    threads = [threading.Thread(target=run, args=(d,)) for d in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ids = sorted(m.id for _, _, m in rec.published)
    assert ids == sorted(f"k{i}" for i in range(40)) and sum(counts) == 40


def test_an_unreadable_row_is_dropped_not_blocking(factory: sessionmaker[Session]) -> None:
    rec, clock = Recorder(), Clock()
    with session_scope(factory) as db:
        db.add(OutboxEvent(kind="from_a_newer_version", payload={}, created_at=T0))
        emit(db, ReplanNeeded(reason="after it"))
    assert make_dispatcher(factory, rec, clock).sweep() == 2
    assert rec.replans == 1 and pending(factory) == 0
