"""Playout test fixtures: real Opus clips, schedule documents, and a stand-in for the server.

`ServerDouble` is a raw server-account MQTT client: it publishes schedules (retained) and
clip chunks, answers clock probes and clip requests like the real server's bridge, and
records (and by default acknowledges) the proof-of-play batches devices send.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import time
import uuid
import wave
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.agent import Agent
from edge_agent.output import sim_timing_path
from loa_testkit.brokerfix import TestBroker
from loa_testkit.harness import eventually
from protocol import (
    PREFIX,
    SERVER_USERNAME,
    SPECS,
    ClipRequest,
    DesiredState,
    DeviceEvent,
    EventAck,
    EventBatch,
    PlayEvent,
    ScheduleMessage,
    TimeRequest,
    TimeResponse,
    TopicKind,
    decode,
    device_topic,
    encode,
    parse_device_topic,
    zone_clip_topic,
)
from protocol.clipchunk import Chunk, encode_chunk, split
from protocol.mqtt_client import MqttLink, Outgoing
from schedules import ClipRef, PlaybackItem, Priority, ScheduleDocument


@dataclass(frozen=True)
class Clip:
    """A real Ogg/Opus file's bytes and identity."""

    data: bytes
    sha256: str
    duration_s: float

    @property
    def ref(self) -> ClipRef:
        """The schedule's reference to it."""
        return ClipRef(sha256=self.sha256, duration_s=self.duration_s, size_bytes=len(self.data))


def make_clip(directory: Path, *, seconds: float, freq: float = 440.0, codec: str = "opus") -> Clip:
    """Encode a sine tone with ffmpeg: Ogg/Opus as the server distributes, or a bigger WAV."""
    if shutil.which("ffmpeg") is None:
        raise AssertionError("ffmpeg is missing (make test installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"tone-{freq:g}-{seconds:g}-{uuid.uuid4().hex[:6]}.{codec}"
    encoder = ["-c:a", "libopus", "-b:a", "48k"] if codec == "opus" else ["-c:a", "pcm_s16le"]
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
            "-i", f"sine=frequency={freq}:duration={seconds}:sample_rate=48000",
            "-ac", "1", *encoder, str(path),
        ],
        check=True,
    )  # fmt: skip
    data = path.read_bytes()
    return Clip(data, hashlib.sha256(data).hexdigest(), seconds)


def at(seconds_from_now: float) -> datetime:
    """A UTC datetime `seconds_from_now` from the real clock (whole milliseconds)."""
    stamp = round(time.time() + seconds_from_now, 3)
    return datetime.fromtimestamp(stamp, UTC)


def item(
    item_id: str,
    start: datetime,
    clips: Sequence[Clip],
    *,
    priority: Priority = Priority.NORMAL,
    volume: int | None = None,
    programme_id: int = 1,
) -> PlaybackItem:
    """A playback item playing `clips` back to back from `start`."""
    duration = sum(c.duration_s for c in clips)
    return PlaybackItem(
        item_id=item_id,
        programme_id=programme_id,
        start=start,
        end=start + timedelta(seconds=duration),
        clips=tuple(c.ref for c in clips),
        priority=priority,
        volume=volume,
    )


def document(
    device_id: str, version: int, items: Iterable[PlaybackItem], *, extra_clips: Iterable[Clip] = ()
) -> ScheduleDocument:
    """A schedule document whose manifest lists every clip its items play."""
    items = tuple(items)
    refs: dict[str, ClipRef] = {}
    for it in items:
        for ref in it.clips:
            refs[ref.sha256] = ref
    for clip in extra_clips:
        refs[clip.sha256] = clip.ref
    now = datetime.now(UTC)
    return ScheduleDocument(
        device_id=device_id,
        version=version,
        generated_at=now,
        horizon_start=now - timedelta(hours=1),
        horizon_end=now + timedelta(days=1),
        items=items,
        clips=tuple(refs.values()),
    )


ChunkFilter = Callable[[Chunk], bytes | None]  # encoded payload to send, or None to drop


@dataclass
class ServerDouble:
    """Plays the server's MQTT role for some devices (see module docstring)."""

    broker: TestBroker
    device_ids: Sequence[str]
    clips: dict[str, bytes] = field(default_factory=dict)
    auto_ack: bool = True
    answer_clip_requests: bool = True
    answer_time: bool = True
    # Applied to chunks answering a device's request (corruption tests).
    request_filter: ChunkFilter | None = None
    batches: list[tuple[str, EventBatch]] = field(default_factory=list)
    clip_requests: list[tuple[str, ClipRequest]] = field(default_factory=list)
    time_requests: int = 0

    def __post_init__(self) -> None:
        self._probe = f"{PREFIX}/test/{uuid.uuid4().hex}"
        self._probed = asyncio.Event()
        self.link = MqttLink(
            client_id=f"srv-{uuid.uuid4().hex[:8]}",
            host=self.broker.host,
            port=self.broker.server_port,
            username=SERVER_USERNAME,
            password=self.broker.server_password,
            on_message=self._on_message,
            keepalive=10,
            min_backoff=0.1,
            max_backoff=0.5,
        )
        for uid in self.device_ids:
            for kind in (TopicKind.EVENTS, TopicKind.CLIP_REQUEST, TopicKind.TIME_REQUEST):
                self.link.subscribe(device_topic(uid, kind), SPECS[kind].qos)
        self.link.subscribe(self._probe)
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect; return once the subscriptions are active."""
        self._task = asyncio.create_task(self.link.run())
        await asyncio.wait_for(self.link.connected.wait(), 10)
        await self.settled()

    async def settled(self) -> None:
        """Return once every subscription of the current connection is active."""
        self._probed.clear()
        while not self._probed.is_set():
            self.link.publish(Outgoing(self._probe, b"probe", qos=1))
            try:
                await asyncio.wait_for(self._probed.wait(), 1)
            except TimeoutError:
                continue

    async def stop(self, *, clear: bool = True) -> None:
        """Clear the devices' retained schedules and disconnect."""
        for task in self._sending:
            task.cancel()
        if clear and self.link.is_connected:
            for uid in self.device_ids:
                for kind in (TopicKind.SCHEDULE, TopicKind.STATE, TopicKind.STATUS):
                    out = Outgoing(device_topic(uid, kind), b"", 1, True)
                    await self.link.publish_wait(out)
        await self.link.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- what devices sent ------------------------------------------------------------------

    def events(self, device_id: str) -> list[PlayEvent]:
        """Every play event received from a device, in arrival order (duplicates included)."""
        return [
            e
            for uid, b in self.batches
            if uid == device_id
            for e in b.events
            if isinstance(e, PlayEvent)
        ]

    def device_events(self, device_id: str) -> list[DeviceEvent]:
        """Every device event (self-test, silence, power) received from a device."""
        return [
            e
            for uid, b in self.batches
            if uid == device_id
            for e in b.events
            if isinstance(e, DeviceEvent)
        ]

    def unique_events(self, device_id: str) -> dict[int, PlayEvent]:
        """Events by seq, as the server stores them (idempotent by (device, seq))."""
        return {e.seq: e for e in self.events(device_id)}

    def _on_message(self, topic: str, payload: bytes) -> None:
        received = time.time()
        if topic == self._probe:
            self._probed.set()
            return
        uid, kind = parse_device_topic(topic)
        message: Any = decode(kind, payload)
        if isinstance(message, TimeRequest):
            self.time_requests += 1
            if self.answer_time:
                response = TimeResponse(id=message.id, t0=message.t0, t1=received, t2=time.time())
                self.link.publish(
                    Outgoing(device_topic(uid, TopicKind.TIME_RESPONSE), encode(response), 0)
                )
        elif isinstance(message, EventBatch):
            self.batches.append((uid, message))
            if self.auto_ack:
                self.ack(uid, [e.seq for e in message.events])
        elif isinstance(message, ClipRequest):
            self.clip_requests.append((uid, message))
            if self.answer_clip_requests and message.sha256 in self.clips:
                self._spawn(self._answer(uid, message))

    def ack(self, device_id: str, seqs: Iterable[int]) -> None:
        """Acknowledge stored events."""
        out = Outgoing(
            device_topic(device_id, TopicKind.EVENTS_ACK), encode(EventAck(seqs=list(seqs)))
        )
        self.link.publish(out)

    # -- publishing -------------------------------------------------------------------------

    async def publish_schedule(self, doc: ScheduleDocument) -> None:
        """Publish a device's schedule, retained."""
        await self.publish_raw(
            doc.device_id, TopicKind.SCHEDULE, encode(ScheduleMessage(document=doc))
        )

    async def publish_raw(self, device_id: str, kind: TopicKind, payload: bytes) -> None:
        """Publish any payload on a device topic (retained where the topic is)."""
        spec = SPECS[kind]
        await self.link.publish_wait(
            Outgoing(device_topic(device_id, kind), payload, spec.qos, spec.retain)
        )

    async def publish_zone_clip(
        self, zone_id: int, clip: Clip, *, only: ChunkFilter | None = None
    ) -> None:
        """Publish a clip's chunks once on a zone topic (optionally altering or dropping some)."""
        self.clips[clip.sha256] = clip.data
        topic = zone_clip_topic(zone_id, clip.sha256)
        for chunk in split(clip.data, clip.sha256):
            payload = encode_chunk(chunk) if only is None else only(chunk)
            if payload is not None:
                await self.link.publish_wait(Outgoing(topic, payload, qos=1))

    async def _answer(self, device_id: str, request: ClipRequest) -> None:
        data = self.clips[request.sha256]
        wanted = None if request.chunks is None else set(request.chunks)
        topic = device_topic(device_id, TopicKind.CLIP)
        for chunk in split(data, request.sha256):
            if wanted is not None and chunk.index not in wanted:
                continue
            altered = (
                encode_chunk(chunk) if self.request_filter is None else self.request_filter(chunk)
            )
            if altered is not None:
                await self.link.publish_wait(Outgoing(topic, altered, qos=1))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)


FAST: dict[str, Any] = {
    "clip_holdoff_s": 0.3,
    "clip_retry_max_s": 2.0,
    "clock_sync_interval_s": 2.0,
}


def timing_lines(data_dir: Path) -> list[dict[str, Any]]:
    """The file sink's JSON lines (what was heard, and when)."""
    path = sim_timing_path(data_dir)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def heard(data_dir: Path, item_id: str) -> list[dict[str, Any]]:
    """The sink's item lines for one item."""
    return [r for r in timing_lines(data_dir) if r["event"] == "item" and r["label"] == item_id]


@asynccontextmanager
async def serving(broker: TestBroker, *device_ids: str) -> AsyncIterator[ServerDouble]:
    """A ServerDouble for the block."""
    server = ServerDouble(broker, device_ids)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def join_zone(server: ServerDouble, agent: Agent, *zones: int, version: int = 1) -> None:
    """Give the agent its zones through the desired state and wait until it reads them."""
    state = DesiredState(version=version, volume=60, zone_ids=list(zones))
    await server.publish_raw(agent.device_id, TopicKind.STATE, encode(state))
    await eventually(lambda: agent.runtime.zone_ids == frozenset(zones), what="the zones")
    await asyncio.sleep(0.2)  # the SUBSCRIBE for the zone is on its way


def wav_hz(data_dir: Path) -> list[float]:
    """Dominant frequency of each 0.25 s of what the file sink recorded (silence skipped)."""
    with wave.open(str(data_dir / "sim" / "output.wav"), "rb") as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    found = []
    for start in range(0, len(samples) - 12000, 12000):
        block = samples[start : start + 12000]
        if np.abs(block).max() < 500:
            continue
        spectrum = np.abs(np.fft.rfft(block * np.hanning(len(block))))
        found.append(float(np.fft.rfftfreq(len(block), 1 / 48000)[int(np.argmax(spectrum))]))
    return found
