"""The small typed interfaces the dispatcher hands events to (bridge, broker files, planner)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from protocol import Message, TopicKind
from server.planner.runner import note_replan_request


class DeviceOutlet(Protocol):
    """Publishes to one device's topics (the MQTT bridge); thread-safe."""

    def publish(self, kind: TopicKind, device_uid: str, message: Message) -> None:
        """Publish with the topic kind's QoS and retain flag."""


class BrokerWriter(Protocol):
    """Regenerates the broker's password and ACL files from the database."""

    def write(self, db: Session) -> None:
        """Write the files and reload the broker."""


class Replanner(Protocol):
    """Asks for a planning pass."""

    def request_replan(self) -> None:
        """The planner compiles again soon (at once when it runs in this process)."""


class NoteReplan:
    """A process without the planner leaves a request row that the leader picks up."""

    def __init__(self, session_factory: sessionmaker[Session], clock: Callable[[], datetime]):
        self.session_factory = session_factory
        self.clock = clock

    def request_replan(self) -> None:
        """Write the request row (the planner leader reads it at its next tick)."""
        note_replan_request(self.session_factory, now=self.clock())
