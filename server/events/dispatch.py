"""Runs committed domain events: right after the commit, and by a sweep for any left behind."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import event, select
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from protocol import Command, TopicKind
from server.devices.models import Device
from server.devices.service import desired_state
from server.events.outbox import claim, complete, forget_pending, take_committed
from server.events.ports import BrokerWriter, DeviceOutlet, Replanner
from server.events.types import (
    AclChanged,
    CommandIssued,
    DesiredStateChanged,
    DomainEvent,
    ReplanNeeded,
    from_row,
)

log = logging.getLogger(__name__)


class Dispatcher:
    """Hands events to the bridge, the broker writer and the planner, only after commit."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        clock: Callable[[], datetime],
        outlet: DeviceOutlet | None,
        broker: BrokerWriter | None,
        replanner: Replanner,
    ) -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.outlet = outlet
        self.broker = broker
        self.replanner = replanner
        self.dispatched = 0  # events handled by this process (tests, the status page)

    def attach(self) -> None:
        """Dispatch each session's events when it commits (forget them when it rolls back)."""
        event.listen(self.session_factory, "after_commit", self._after_commit)
        event.listen(self.session_factory, "after_soft_rollback", self._after_rollback)

    def detach(self) -> None:
        """Stop listening (app shutdown)."""
        if event.contains(self.session_factory, "after_commit", self._after_commit):
            event.remove(self.session_factory, "after_commit", self._after_commit)
            event.remove(self.session_factory, "after_soft_rollback", self._after_rollback)

    def _after_commit(self, session: Session) -> None:
        # SQLAlchemy 2.1 fires after_commit also when a SAVEPOINT is released: the rows are not
        # committed yet, and a claim now would find nothing (they would wait for the sweep).
        if session.in_nested_transaction():
            return
        ids = take_committed(session)
        if ids:
            self.dispatch(ids)

    def _after_rollback(self, session: Session, previous: SessionTransaction) -> None:
        # A rolled-back SAVEPOINT drops only its own rows; the outer transaction's stay pending.
        forget_pending(session, savepoint=previous.nested)

    def sweep(self) -> int:
        """Dispatch rows whose process died between commit and dispatch; returns how many."""
        return self.dispatch(None)

    def dispatch(self, ids: list[int] | None) -> int:
        """Claim these rows (any waiting row for None), run them, mark them done."""
        with self.session_factory() as db:
            rows = claim(db, ids=ids, now=self.clock())
            if not rows:
                return 0
            events: list[DomainEvent] = []
            for row in rows:
                try:
                    events.append(from_row(row.kind, row.payload))
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("outbox event %s is unreadable and is dropped: %s", row.id, exc)
            try:
                self._run(db, events)
            except Exception:
                # The lease runs out and the sweep tries again; the change itself is committed.
                log.exception(
                    "dispatching %d committed event(s) failed; retried by the next sweep",
                    len(rows),
                )
                return 0
            complete(db, ids=[row.id for row in rows], now=self.clock())
        self.dispatched += len(rows)
        return len(rows)

    def _run(self, db: Session, events: list[DomainEvent]) -> None:
        # Coalesced and ordered: accounts first (a new device can connect), then what devices
        # read, then the planner (which publishes schedules for the new state).
        if any(isinstance(e, AclChanged) for e in events) and self.broker is not None:
            self.broker.write(db)
        device_ids = sorted(
            {i for e in events if isinstance(e, DesiredStateChanged) for i in e.device_ids}
        )
        if device_ids and self.outlet is not None:
            for device in db.scalars(select(Device).where(Device.id.in_(device_ids))):
                self.outlet.publish(TopicKind.STATE, device.uid, desired_state(device))
        for e in events:
            if isinstance(e, CommandIssued) and self.outlet is not None:
                self.outlet.publish(
                    TopicKind.COMMAND, e.device_uid, Command.model_validate(e.message)
                )
        if any(isinstance(e, ReplanNeeded) for e in events):
            self.replanner.request_replan()
