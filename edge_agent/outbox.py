"""Proof-of-play outbox: events persisted with a per-device sequence number until acknowledged.

An event leaves the local database only when an EventAck naming its seq arrives. Events
are published whenever the link is up, oldest first, in batches; after a reconnect, or
when no acknowledgement came within `resend_after_s`, they are published again (the
server stores them idempotently by (device, seq)).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from audio.clock import Clock
from edge_agent.localdb import LocalDb
from protocol import (
    EVENT_ADAPTER,
    SPECS,
    DeviceEvent,
    EventAck,
    EventBatch,
    PlayEvent,
    TopicKind,
    encode,
)
from protocol.mqtt_client import MqttLink, Outgoing

log = logging.getLogger(__name__)

BATCH_EVENTS = 100
MAX_IN_FLIGHT = 1000  # events published and not yet acknowledged
_PAYLOAD_LIMIT = SPECS[TopicKind.EVENTS].max_payload - 1024
IDLE_CHECK_S = 1.0


class Outbox:
    """Records outcomes durably and delivers them to the server at least once."""

    def __init__(
        self,
        *,
        db: LocalDb,
        link: MqttLink,
        topic: str,
        clock: Clock,
        resend_after_s: float,
        on_recorded: Callable[[PlayEvent], None] | None = None,
    ) -> None:
        self.db = db
        self.link = link
        self.topic = topic
        self.clock = clock
        self.resend_after_s = resend_after_s
        self._on_recorded = on_recorded
        self._in_flight: dict[int, float] = {}  # seq -> monotonic time published
        self._generation = -1  # link.connects when _in_flight was filled
        self._acked: set[int] = set()
        self._wake = asyncio.Event()
        self.batches_sent = 0
        self.acknowledged = 0

    async def record(self, *, item_id: str, planned_start: float, event: dict[str, Any]) -> int:
        """Persist an outcome (with a new seq) and wake the publisher; return the seq."""
        seq = await asyncio.to_thread(
            self.db.record_outcome, item_id=item_id, planned_start=planned_start, event=event
        )
        if self._on_recorded is not None:
            with contextlib.suppress(ValidationError):  # _publish_due logs and drops it
                self._on_recorded(PlayEvent.model_validate({**event, "seq": seq}))
        self._wake.set()
        return seq

    async def record_device_event(self, event: dict[str, Any]) -> int:
        """Persist a device event (protocol.DeviceEvent fields but seq) and wake the publisher."""
        seq = await asyncio.to_thread(self.db.record_event, event=event)
        self._wake.set()
        return seq

    def on_ack(self, ack: EventAck) -> None:
        """The server stored these seqs."""
        self._acked.update(ack.seqs)
        self._wake.set()

    def wake(self) -> None:
        """Publish now if anything is due (called after a reconnect)."""
        self._wake.set()

    async def pending(self) -> int:
        """Events not yet acknowledged."""
        return await asyncio.to_thread(self.db.outbox_size)

    async def run(self) -> None:
        """Publish and prune until cancelled."""
        while True:
            await self._prune_acked()
            if self.link.is_connected:
                await self._publish_due()
            self._wake.clear()
            deadline = self.clock.monotonic() + IDLE_CHECK_S
            sleeper = asyncio.ensure_future(self.clock.sleep_until(deadline))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()

    async def _prune_acked(self) -> None:
        if not self._acked:
            return
        seqs, self._acked = sorted(self._acked), set()
        await asyncio.to_thread(self.db.acknowledge, seqs)
        for seq in seqs:
            self._in_flight.pop(seq, None)
        self.acknowledged += len(seqs)

    async def _publish_due(self) -> None:
        if self._generation != self.link.connects:
            # A new connection: whatever was in flight may never have reached the server.
            self._generation = self.link.connects
            self._in_flight.clear()
        now = self.clock.monotonic()
        expired = [s for s, t in self._in_flight.items() if now - t > self.resend_after_s]
        for seq in expired:
            del self._in_flight[seq]
        room = MAX_IN_FLIGHT - len(self._in_flight)
        if room <= 0:
            return
        rows = await asyncio.to_thread(self.db.outbox, limit=len(self._in_flight) + room)
        due: list[PlayEvent | DeviceEvent] = []
        for row in rows:
            if row["seq"] in self._in_flight:
                continue
            try:
                due.append(EVENT_ADAPTER.validate_python(row))
            except ValidationError as exc:
                # Out of the protocol's ranges (a clock far off): no server would store it,
                # and it must not stop every later event from being sent.
                log.error("outbox: dropped event %s, it cannot be sent: %s", row["seq"], exc)
                self._acked.add(row["seq"])
        for batch in _batches(due[:room]):
            payload = encode(EventBatch(events=batch))
            spec = SPECS[TopicKind.EVENTS]
            self.link.publish(Outgoing(self.topic, payload, spec.qos, spec.retain))
            self.batches_sent += 1
            for event in batch:
                self._in_flight[event.seq] = now
        if expired:
            log.info("outbox: re-sent %d event(s) the server had not acknowledged", len(expired))


def _batches(events: list[PlayEvent | DeviceEvent]) -> list[list[PlayEvent | DeviceEvent]]:
    """Split events into batches that fit the EVENTS topic's size and count limits."""
    batches: list[list[PlayEvent | DeviceEvent]] = []
    current: list[PlayEvent | DeviceEvent] = []
    size = 0
    for event in events:
        event_size = len(event.model_dump_json()) + 1
        if current and (len(current) >= BATCH_EVENTS or size + event_size > _PAYLOAD_LIMIT):
            batches.append(current)
            current, size = [], 0
        current.append(event)
        size += event_size
    if current:
        batches.append(current)
    return batches
