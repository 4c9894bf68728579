"""The domain events a use case emits; each is stored in the outbox with its transaction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from protocol import Message


@dataclass(frozen=True)
class DesiredStateChanged:
    """These devices' desired state (volume, zones, config) changed: publish it, retained."""

    kind: ClassVar[str] = "desired_state_changed"
    device_ids: tuple[int, ...]


@dataclass(frozen=True)
class AclChanged:
    """Device accounts or zone membership changed: rewrite the broker's password and ACL files."""

    kind: ClassVar[str] = "acl_changed"


@dataclass(frozen=True)
class ReplanNeeded:
    """Programmes, zones or devices changed: the planner must compile schedules again."""

    kind: ClassVar[str] = "replan_needed"
    reason: str


@dataclass(frozen=True)
class CommandIssued:
    """A command for one device was stored: publish it (the agent refuses it once expired)."""

    kind: ClassVar[str] = "command_issued"
    device_uid: str
    message: dict[str, Any]  # the protocol Command, as JSON


DomainEvent = DesiredStateChanged | AclChanged | ReplanNeeded | CommandIssued
_KINDS: dict[str, type[DomainEvent]] = {
    cls.kind: cls for cls in (DesiredStateChanged, AclChanged, ReplanNeeded, CommandIssued)
}


def command_issued(device_uid: str, message: Message) -> CommandIssued:
    """The event for a protocol command addressed to one device."""
    return CommandIssued(device_uid=device_uid, message=message.model_dump(mode="json"))


def to_payload(event: DomainEvent) -> dict[str, Any]:
    """The event as JSON for its outbox row."""
    return asdict(event)


def from_row(kind: str, payload: dict[str, Any]) -> DomainEvent:
    """Rebuild an event from its outbox row (ValueError for an unknown kind)."""
    cls = _KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown domain event kind {kind!r}")
    if cls is DesiredStateChanged:
        return DesiredStateChanged(device_ids=tuple(int(i) for i in payload["device_ids"]))
    return cls(**payload)
