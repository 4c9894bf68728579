"""Clips over MQTT: once per zone to every member, exact chunks on a device's request."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import timedelta

import paho.mqtt.client as mqtt

from protocol import ClipRequest, TopicKind, device_topic, encode, zone_clip_filter
from protocol.clipchunk import CHUNK_SIZE, Chunk, decode_chunk
from server.planner.models import ZoneClip
from tests.server.test_programmes_fixtures import NOW, World, one_off, sqlite_world, wait

__all__ = ["sqlite_world"]  # the fixture, imported for pytest


class ChunkInbox:
    """Chunks a device client received, by topic."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, Chunk]] = []
        self._lock = threading.Lock()

    def __call__(self, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.chunks.append((message.topic, decode_chunk(bytes(message.payload))))

    def on(self, topic: str) -> list[Chunk]:
        """Chunks received on one topic, in arrival order."""
        with self._lock:
            return [c for t, c in self.chunks if t == topic]


def _assemble(chunks: list[Chunk]) -> bytes:
    by_index = {c.index: c.data for c in chunks}
    count = chunks[0].count
    assert sorted(by_index) == list(range(count))
    return b"".join(by_index[i] for i in range(count))


def _setup(w: World, *, size: int) -> tuple[str, ChunkInbox, int, str, int]:
    """A device in a zone, listening on the zone's clips and its own clip topic."""
    org = w.org()
    device_id, uid, password = w.device(org)
    zone = w.zone(org, device_ids=[device_id])
    inbox = ChunkInbox()
    w.connect(uid, password, inbox, [zone_clip_filter(zone), device_topic(uid, TopicKind.CLIP)])
    clip = w.clip(size=size)
    return uid, inbox, zone, clip.sha256, clip.id


def test_a_zone_receives_every_chunk_once_and_the_bytes_match(sqlite_world: World) -> None:
    w = sqlite_world
    size = 5 * CHUNK_SIZE + 1234
    uid, inbox, zone, sha, clip_id = _setup(w, size=size)
    metrics = w.stack.app.state.bridge.clips.metrics
    w.approved(**one_off([clip_id], [zone], at=NOW + timedelta(hours=1)))
    topic = f"loa/v1/zone/{zone}/clip/{sha}"
    assert wait(lambda: len(inbox.on(topic)) == 6)
    data = _assemble(inbox.on(topic))
    assert hashlib.sha256(data).hexdigest() == sha and data == w.clip_bytes(sha)
    assert wait(lambda: metrics.sent_bytes("zone") == size + 6 * 52)

    def published() -> bool:
        with w.stack.session() as db:  # a fresh session each time: no stale identity map
            row = db.get(ZoneClip, (zone, sha))
            return row is not None and row.published_at is not None

    assert wait(published)
    # Later passes and a second programme with the same clip publish nothing again.
    w.approved(**one_off([clip_id], [zone], at=NOW + timedelta(hours=3), title="Lại"))
    w.planner.run_once()
    time.sleep(0.5)
    assert len(inbox.on(topic)) == 6 and metrics.sent_bytes("zone") == size + 6 * 52
    assert inbox.on(device_topic(uid, TopicKind.CLIP)) == []


def test_a_clip_request_gets_exactly_the_chunks_asked_for(sqlite_world: World) -> None:
    w = sqlite_world
    uid, inbox, zone, sha, clip_id = _setup(w, size=4 * CHUNK_SIZE + 10)
    w.approved(**one_off([clip_id], [zone], at=NOW + timedelta(hours=1)))
    assert wait(lambda: len(inbox.on(f"loa/v1/zone/{zone}/clip/{sha}")) == 5)
    device = w.clients[0]
    request = ClipRequest(sha256=sha, chunks=[3, 1])
    device.publish(device_topic(uid, TopicKind.CLIP_REQUEST), encode(request), qos=1)
    own = device_topic(uid, TopicKind.CLIP)
    assert wait(lambda: len(inbox.on(own)) == 2)
    time.sleep(0.3)
    got = inbox.on(own)
    assert sorted(c.index for c in got) == [1, 3]
    data = w.clip_bytes(sha)
    assert all(c.data == data[c.index * CHUNK_SIZE : (c.index + 1) * CHUNK_SIZE] for c in got)
    # chunks=None asks for the whole clip.
    device.publish(
        device_topic(uid, TopicKind.CLIP_REQUEST), encode(ClipRequest(sha256=sha)), qos=1
    )
    assert wait(lambda: len(inbox.on(own)) == 7)
    assert hashlib.sha256(_assemble(inbox.on(own)[2:])).hexdigest() == sha


def test_requests_outside_the_schedule_are_refused_and_counted(sqlite_world: World) -> None:
    w = sqlite_world
    uid, inbox, zone, _sha, clip_id = _setup(w, size=1000)
    w.approved(**one_off([clip_id], [zone], at=NOW + timedelta(hours=1)))
    other = w.clip(size=1000)  # stored, but in nobody's schedule
    device = w.clients[0]
    topic = device_topic(uid, TopicKind.CLIP_REQUEST)
    device.publish(topic, encode(ClipRequest(sha256=other.sha256)), qos=1)
    device.publish(topic, encode(ClipRequest(sha256="ab" * 32)), qos=1)
    metrics = w.stack.app.state.metrics
    assert wait(lambda: metrics.rejected("clipreq", "not_in_schedule") == 1)
    assert wait(lambda: metrics.rejected("clipreq", "unknown_clip") == 1)
    time.sleep(0.3)
    assert inbox.on(device_topic(uid, TopicKind.CLIP)) == []
