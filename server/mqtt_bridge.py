"""The server's single MQTT connection: reads device status/telemetry/acks, publishes state."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from protocol import (
    SERVER_USERNAME,
    SPECS,
    Ack,
    Birth,
    DesiredState,
    Message,
    Offline,
    ProtocolError,
    Telemetry,
    TopicError,
    TopicKind,
    decode,
    device_filter,
    device_topic,
    encode,
    parse_device_topic,
)
from protocol.mqtt_client import MqttLink, Outgoing
from server.db import session_scope
from server.devices import service as devices
from server.metrics import Metrics
from server.settings import ServerSettings

log = logging.getLogger(__name__)

READ_KINDS = (TopicKind.STATUS, TopicKind.TELEMETRY, TopicKind.ACK)
QUEUE_LIMIT = 50_000
BATCH_LIMIT = 1_000


class MqttBridge:
    """Hops broker messages into the event loop and applies them to the database in batches."""

    def __init__(
        self,
        *,
        settings: ServerSettings,
        session_factory: sessionmaker[Session],
        metrics: Metrics,
        on_ack: Callable[[str, Ack], None] | None = None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.metrics = metrics
        self.on_ack = on_ack
        self.queue: asyncio.Queue[tuple[str, bytes, float]] = asyncio.Queue(QUEUE_LIMIT)
        self.link = MqttLink(
            client_id=f"{SERVER_USERNAME}-{socket.gethostname()}-{os.getpid()}",
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            username=SERVER_USERNAME,
            password=settings.mqtt_secret(),
            on_message=self._on_message,
            on_connected=self._on_connected,
            keepalive=30,
            max_backoff=15,
        )
        for kind in READ_KINDS:
            self.link.subscribe(device_filter(kind), SPECS[kind].qos)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.processed = 0  # messages applied (for tests and benchmarks)

    async def start(self) -> None:
        """Start connecting (in the background) and consuming."""
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self.link.run(), name="mqtt-link"),
            asyncio.create_task(self._consume(), name="mqtt-consume"),
        ]

    async def stop(self) -> None:
        """Disconnect and stop consuming."""
        await self.link.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.metrics.mqtt_connected.set(0)

    # -- outgoing ---------------------------------------------------------------------------

    def publish(self, kind: TopicKind, device_uid: str, message: Message) -> None:
        """Publish to a device's topic with that topic's QoS/retain (callable from any thread)."""
        spec = SPECS[kind]
        out = Outgoing(device_topic(device_uid, kind), encode(message), spec.qos, spec.retain)
        if self._loop is None:
            log.warning("MQTT bridge not started; %s to %s not sent", kind, device_uid)
            return
        self._loop.call_soon_threadsafe(self.link.publish, out)

    def publish_state(self, device_uid: str, state: DesiredState) -> None:
        """Publish a device's desired state, retained."""
        self.publish(TopicKind.STATE, device_uid, state)

    # -- incoming ---------------------------------------------------------------------------

    def _on_connected(self, _conn_id: str) -> None:
        self.metrics.mqtt_connected.set(1)
        log.info("connected to MQTT broker %s:%s", self.settings.mqtt_host, self.settings.mqtt_port)

    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            self.queue.put_nowait((topic, payload, time.time()))
        except asyncio.QueueFull:
            self.metrics.mqtt_rejected.labels("any", "overload").inc()

    async def _consume(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < BATCH_LIMIT and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                await asyncio.to_thread(self._apply_batch, batch)
            except Exception:  # the database may be briefly unavailable; never stop consuming
                log.exception("could not store %d MQTT messages", len(batch))
                await asyncio.sleep(1)

    def _apply_batch(self, batch: list[tuple[str, bytes, float]]) -> None:
        acks: list[tuple[str, Ack]] = []
        with session_scope(self.session_factory) as db:
            for topic, payload, received in batch:
                ack = self._apply_one(db, topic, payload, datetime.fromtimestamp(received, UTC))
                if ack is not None:
                    acks.append(ack)
            online = devices.count_online(db)
        self.metrics.devices_online.set(online)
        self.processed += len(batch)
        if self.on_ack is not None:
            for uid, ack in acks:
                self.on_ack(uid, ack)

    def _reject(self, kind: str, reason: str, topic: str, why: str) -> None:
        self.metrics.mqtt_rejected.labels(kind, reason).inc()
        log.warning("rejected MQTT message on %s: %s", topic[:200], why[:300])

    def _apply_one(
        self, db: Session, topic: str, payload: bytes, now: datetime
    ) -> tuple[str, Ack] | None:
        try:
            uid, kind = parse_device_topic(topic)
        except TopicError as exc:
            self._reject("unknown", "bad_topic", topic, str(exc))
            return None
        self.metrics.mqtt_received.labels(kind.value).inc()
        if kind not in READ_KINDS:
            return None  # our own downlink echoed back (we subscribe to nothing else)
        if not payload and kind is TopicKind.STATUS:
            return None  # a cleared retained status (device deleted)
        try:
            msg = decode(kind, payload)
        except ProtocolError as exc:
            self._reject(kind.value, exc.reason, topic, str(exc))
            return None
        device = devices.by_uid(db, uid)
        if device is None:
            self._reject(kind.value, "unknown_device", topic, f"no device {uid!r} is registered")
            return None
        if isinstance(msg, Birth):
            devices.apply_birth(db, device=device, birth=msg, now=now)
        elif isinstance(msg, Offline):
            devices.apply_offline(db, device=device, msg=msg, now=now)
        elif isinstance(msg, Telemetry):
            devices.apply_telemetry(db, device=device, msg=msg, now=now)
        elif isinstance(msg, Ack):
            device.last_seen = now
            return uid, msg
        db.flush()
        return None
