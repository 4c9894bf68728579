"""The server's single MQTT connection: reads what devices send, publishes what they need."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from protocol import (
    SERVER_USERNAME,
    SPECS,
    Ack,
    Birth,
    ClipRequest,
    DesiredState,
    EventAck,
    EventBatch,
    Message,
    Offline,
    ProtocolError,
    ScheduleMessage,
    Telemetry,
    TimeRequest,
    TopicError,
    TopicKind,
    decode,
    device_filter,
    device_topic,
    encode,
    parse_device_topic,
)
from protocol.messages import salvage_events
from protocol.mqtt_client import MqttLink, Outgoing
from schedules import ScheduleDocument
from server.clips.storage import ClipStorage
from server.db import session_scope, utcnow
from server.devices import service as devices
from server.devices.telemetry import SampleThrottle, prune_samples, store_sample
from server.distribution.requests import Refusal, check_clip_request
from server.distribution.sender import ClipJob, ClipSender, SenderMetrics
from server.metrics import Metrics
from server.planner.compile import mark_zone_clip_published
from server.plays.service import store_events
from server.settings import ServerSettings
from server.timesync import answer_time_request

log = logging.getLogger(__name__)

AckListener = Callable[[str, Ack], None]  # (device uid, its Ack)

# Applied in batches on a worker thread (they touch the database).
READ_KINDS = (
    TopicKind.STATUS,
    TopicKind.TELEMETRY,
    TopicKind.ACK,
    TopicKind.EVENTS,
    TopicKind.CLIP_REQUEST,
)
# Answered on the event loop the moment they arrive: queueing would add delay to t2 - t1
# that the device cannot tell from network delay.
IMMEDIATE_KINDS = (TopicKind.TIME_REQUEST,)
# With several server processes on one broker, a shared subscription hands each of these to
# exactly one of them: a clip request is answered once, an event batch stored and acknowledged
# once, a clock probe answered once. Status stays a plain subscription (it is retained, and a
# shared subscription receives no retained messages); acks too (the live session an ack
# concerns runs in one process, and recording an ack twice changes nothing).
SHARED_GROUP = "loa-server"
SHARED_KINDS = frozenset(
    {TopicKind.TELEMETRY, TopicKind.EVENTS, TopicKind.CLIP_REQUEST, TopicKind.TIME_REQUEST}
)
QUEUE_LIMIT = 50_000
BATCH_LIMIT = 1_000
EVENT_ACK_LIMIT = 1_000


def bridge_filter(kind: TopicKind) -> str:
    """The bridge's subscription for one kind: shared by all server processes where it may."""
    topic_filter = device_filter(kind)
    return f"$share/{SHARED_GROUP}/{topic_filter}" if kind in SHARED_KINDS else topic_filter


@dataclass
class AfterCommit:
    """What a batch sends once its database transaction has committed."""

    acks: list[tuple[str, Ack]] = field(default_factory=list)
    event_seqs: dict[str, list[int]] = field(default_factory=dict)
    clip_jobs: list[ClipJob] = field(default_factory=list)
    states: list[tuple[str, DesiredState]] = field(default_factory=list)

    def extend(self, other: AfterCommit) -> None:
        """Add what one message (whose savepoint was released) will send."""
        self.acks.extend(other.acks)
        for uid, seqs in other.event_seqs.items():
            self.event_seqs.setdefault(uid, []).extend(seqs)
        self.clip_jobs.extend(other.clip_jobs)
        self.states.extend(other.states)


class MqttBridge:
    """Hops broker messages into the event loop and applies them to the database in batches."""

    def __init__(
        self,
        *,
        settings: ServerSettings,
        session_factory: sessionmaker[Session],
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.metrics = metrics
        self._ack_listeners: list[AckListener] = []
        self.samples = SampleThrottle(
            interval_s=settings.telemetry_sample_interval_s,
            retention=timedelta(days=settings.telemetry_retention_days),
        )
        self.queue: asyncio.Queue[tuple[str, bytes, float]] = asyncio.Queue(QUEUE_LIMIT)
        self.link = MqttLink(
            # Unique per link: two apps in one process (tests) must not push each other off.
            client_id=f"{SERVER_USERNAME}-{socket.gethostname()}-{os.getpid()}-{id(self):x}",
            host=settings.mqtt_host,
            port=settings.server_mqtt_port,
            username=SERVER_USERNAME,
            password=settings.mqtt_secret(),
            on_message=self._on_message,
            on_connected=self._on_connected,
            keepalive=30,
            max_backoff=15,
        )
        for kind in READ_KINDS + IMMEDIATE_KINDS:
            self.link.subscribe(bridge_filter(kind), SPECS[kind].qos)
        storage = ClipStorage(settings.data_dir / "clips")
        self.clips = ClipSender(
            link=self.link,
            clip_path=storage.dist_path,
            metrics=SenderMetrics(metrics.registry),
            inflight=settings.clip_publish_inflight,
            on_zone_published=self._zone_clip_published,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.processed = 0  # messages applied (for tests and benchmarks)

    def add_ack_listener(self, callback: AckListener) -> None:
        """Call back with every device Ack, after its batch committed (on a worker thread).

        Every listener hears every ack, in the order they were added; each decides which
        acks are its own (a stored command's, a live session's join or leave).
        """
        self._ack_listeners.append(callback)

    async def start(self) -> None:
        """Start connecting (in the background) and consuming."""
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self.link.run(), name="mqtt-link"),
            asyncio.create_task(self._consume(), name="mqtt-consume"),
        ]
        self.clips.start()

    async def stop(self) -> None:
        """Disconnect and stop consuming."""
        await self.clips.stop()
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

    def publish_schedule(self, document: ScheduleDocument) -> None:
        """Publish a device's compiled schedule, retained (callable from any thread)."""
        self.publish(TopicKind.SCHEDULE, document.device_id, ScheduleMessage(document=document))

    def publish_zone_clip(self, zone_id: int, sha256: str) -> None:
        """Publish a clip's chunks once on the zone's clip topic (callable from any thread)."""
        self.clips.submit(ClipJob(sha256=sha256, zone_id=zone_id))

    def _zone_clip_published(self, zone_id: int, sha256: str) -> None:
        with session_scope(self.session_factory) as db:
            mark_zone_clip_published(db, zone_id=zone_id, sha256=sha256, at=utcnow())

    # -- incoming ---------------------------------------------------------------------------

    def _on_connected(self, _conn_id: str) -> None:
        self.metrics.mqtt_connected.set(1)
        log.info(
            "connected to MQTT broker %s:%s",
            self.settings.mqtt_host,
            self.settings.server_mqtt_port,
        )

    def _on_message(self, topic: str, payload: bytes) -> None:
        received = time.time()
        if topic.endswith(f"/{TopicKind.TIME_REQUEST.value}"):
            self._answer_time(topic, payload, received)
            return
        try:
            self.queue.put_nowait((topic, payload, received))
        except asyncio.QueueFull:
            self.metrics.mqtt_rejected.labels("any", "overload").inc()

    def _answer_time(self, topic: str, payload: bytes, received: float) -> None:
        try:
            uid, kind = parse_device_topic(topic)
        except TopicError as exc:
            self._reject("unknown", "bad_topic", topic, str(exc))
            return
        self.metrics.mqtt_received.labels(kind.value).inc()
        try:
            request = decode(kind, payload)
        except ProtocolError as exc:
            self._reject(kind.value, exc.reason, topic, str(exc))
            return
        assert isinstance(request, TimeRequest)
        response = answer_time_request(request, received_at=received)
        spec = SPECS[TopicKind.TIME_RESPONSE]
        out = Outgoing(
            device_topic(uid, TopicKind.TIME_RESPONSE), encode(response), spec.qos, spec.retain
        )
        self.link.publish(out)  # already on the loop: straight out, no hop

    async def _consume(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < BATCH_LIMIT and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                await asyncio.to_thread(self._apply_batch, batch)
            except Exception:  # the database may be briefly unavailable; never stop consuming
                log.exception("could not store %d MQTT messages", len(batch))
                self.metrics.mqtt_rejected.labels("any", "database_error").inc(len(batch))
                await asyncio.sleep(1)

    def _apply_batch(self, batch: list[tuple[str, bytes, float]]) -> None:
        after = AfterCommit()
        with session_scope(self.session_factory) as db:
            if db.get_bind().dialect.name == "sqlite":
                # pysqlite sends no BEGIN before a SAVEPOINT: the first savepoint would start
                # a deferred transaction whose read snapshot then cannot take the write lock
                # ("database is locked"). Take the write lock first, waiting as for any write.
                db.connection().exec_driver_sql("BEGIN IMMEDIATE")
            for topic, payload, received in batch:
                now = datetime.fromtimestamp(received, UTC)
                self._apply_isolated(db, topic, payload, now, after)
            if self.samples.prune_due():
                prune_samples(db, before=utcnow() - self.samples.retention)
            online = devices.count_online(db)
        # Committed: only now may devices drop events from their outboxes.
        self.metrics.devices_online.set(online)
        for uid, seqs in after.event_seqs.items():
            unique = sorted(set(seqs))
            for i in range(0, len(unique), EVENT_ACK_LIMIT):
                self.publish(
                    TopicKind.EVENTS_ACK, uid, EventAck(seqs=unique[i : i + EVENT_ACK_LIMIT])
                )
        for job in after.clip_jobs:
            self.clips.submit(job)
        for uid, state in after.states:
            self.publish_state(uid, state)
        for uid, ack in after.acks:
            for listener in self._ack_listeners:
                try:
                    listener(uid, ack)
                except Exception as exc:  # after the commit: never lose the other acks
                    self._reject(TopicKind.ACK.value, "not_stored", uid, _why(exc))
        self.processed += len(batch)  # counted last: tests wait on it for acks too

    def _reject(self, kind: str, reason: str, topic: str, why: str, *, count: int = 1) -> None:
        self.metrics.mqtt_rejected.labels(kind, reason).inc(count)
        log.warning("rejected MQTT message on %s: %s", topic[:200], why[:300])

    def _apply_isolated(
        self, db: Session, topic: str, payload: bytes, now: datetime, after: AfterCommit
    ) -> None:
        # One SAVEPOINT per message: a message the database refuses is rolled back alone and
        # never costs the rest of the batch (other devices' births, events, acks).
        mine = AfterCommit()
        try:
            with db.begin_nested():
                self._apply_one(db, topic, payload, now, mine)
        except (OperationalError, InterfaceError):
            raise  # the database is unavailable: the whole batch fails, as before
        except Exception as exc:
            self._reject(_kind_label(topic), "not_stored", topic, _why(exc))
            return
        after.extend(mine)

    def _apply_one(
        self, db: Session, topic: str, payload: bytes, now: datetime, after: AfterCommit
    ) -> None:
        try:
            uid, kind = parse_device_topic(topic)
        except TopicError as exc:
            self._reject("unknown", "bad_topic", topic, str(exc))
            return
        self.metrics.mqtt_received.labels(kind.value).inc()
        if kind not in READ_KINDS:
            return  # our own downlink echoed back (we subscribe to nothing else)
        if not payload and kind is TopicKind.STATUS:
            return  # a cleared retained status (device deleted)
        try:
            msg = decode(kind, payload)
        except ProtocolError as exc:
            if kind is TopicKind.EVENTS and exc.reason == "invalid":
                self._salvage_events(db, uid, topic, payload, now, after, exc)
            else:
                self._reject(kind.value, exc.reason, topic, str(exc))
            return
        device = devices.by_uid(db, uid)
        if device is None:
            self._reject(kind.value, "unknown_device", topic, f"no device {uid!r} is registered")
            return
        if isinstance(msg, Birth):
            devices.apply_birth(db, device=device, birth=msg, now=now)
            state = devices.desired_state(device)
            if msg.state_version is None or msg.state_version < state.version:
                # It never got its desired state (seeded in the database, a broker that lost
                # its retained messages): without it the device does not know its zones.
                after.states.append((uid, state))
        elif isinstance(msg, Offline):
            devices.apply_offline(db, device=device, msg=msg, now=now)
        elif isinstance(msg, Telemetry):
            devices.apply_telemetry(db, device=device, msg=msg, now=now)
            if self.samples.due(device.id):
                store_sample(db, device=device, msg=msg, now=now)
        elif isinstance(msg, Ack):
            device.last_seen = now
            after.acks.append((uid, msg))
        elif isinstance(msg, EventBatch):
            stored = store_events(db, device=device, batch=msg, now=now)
            if stored.unusable:
                self._reject(kind.value, "bad_event", topic, f"{stored.unusable} unusable event(s)")
            after.event_seqs.setdefault(uid, []).extend(stored.seqs)
        elif isinstance(msg, ClipRequest):
            answer = check_clip_request(db, device=device, request=msg)
            if isinstance(answer, Refusal):
                self._reject(kind.value, answer.reason, topic, answer.why)
            else:
                after.clip_jobs.append(answer)
        db.flush()

    def _salvage_events(
        self,
        db: Session,
        uid: str,
        topic: str,
        payload: bytes,
        now: datetime,
        after: AfterCommit,
        error: ProtocolError,
    ) -> None:
        # Store a refused batch's valid events and acknowledge the seqs of the bad ones, so
        # one bad event neither loses the others nor blocks the device's outbox.
        good, refused = salvage_events(payload)
        device = devices.by_uid(db, uid) if good or refused else None
        if device is None:
            self._reject(TopicKind.EVENTS.value, error.reason, topic, str(error))
            return
        if refused:
            why = f"{len(refused)} event(s) refused, seqs acknowledged; first: {error}"
            self._reject(TopicKind.EVENTS.value, "bad_event", topic, why, count=len(refused))
        else:  # the envelope was wrong, or events without a usable seq
            self._reject(TopicKind.EVENTS.value, error.reason, topic, str(error))
        seqs = list(refused)
        if good:
            stored = store_events(db, device=device, batch=EventBatch(events=good), now=now)
            seqs.extend(stored.seqs)
        after.event_seqs.setdefault(uid, []).extend(seqs)
        db.flush()


def _kind_label(topic: str) -> str:
    """The metrics label of a topic's kind ("unknown" for a topic outside protocol v1)."""
    try:
        return parse_device_topic(topic)[1].value
    except TopicError:
        return "unknown"


def _why(exc: Exception) -> str:
    """One readable line about a store error (the driver's text can span many lines)."""
    text = " ".join(str(exc).split())
    return f"could not be stored ({type(exc).__name__}: {text[:200]})"
