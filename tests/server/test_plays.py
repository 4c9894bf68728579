"""Proof of play: idempotent storage, acks after commit, the /plays report; clock probes;
garbage on every new device topic."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import paho.mqtt.client as mqtt

from protocol import (
    EventBatch,
    PlayEvent,
    TimeRequest,
    TopicKind,
    decode,
    device_topic,
    encode,
)
from server.plays.models import PlayRecord
from tests.server.test_programmes_fixtures import NOW, World, one_off, sqlite_world, wait, world

__all__ = ["sqlite_world", "world"]  # fixtures, imported for pytest


class Inbox:
    """Messages a device client received, with what the API said at the moment each arrived."""

    def __init__(self, w: World | None = None, device_id: int | None = None) -> None:
        self.messages: list[tuple[str, bytes, int | None]] = []
        self._world, self._device_id = w, device_id
        self._lock = threading.Lock()

    def __call__(self, message: mqtt.MQTTMessage) -> None:
        stored = None
        if self._world is not None and message.topic.endswith("/evack"):
            # Read from the database as the ack arrives: it must already be committed.
            with self._world.stack.session() as db:
                stored = db.query(PlayRecord).filter_by(device_id=self._device_id).count()
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), stored))

    def on(self, suffix: str) -> list[tuple[bytes, int | None]]:
        """Payloads (and stored counts) received on topics ending with suffix."""
        with self._lock:
            return [(p, n) for t, p, n in self.messages if t.endswith(suffix)]


def _event(
    seq: int, *, programme_id: int | None, minutes: int, outcome: str = "played"
) -> PlayEvent:
    planned = (NOW + timedelta(minutes=minutes)).timestamp()
    return PlayEvent(
        seq=seq, item_id=f"{programme_id}@{seq}", programme_id=programme_id,
        planned_start=planned, actual_start=planned + 0.012, ended_at=planned + 60,
        outcome=outcome, clock_offset_ms=3.5, clock_error_ms=1.2,
    )  # fmt: skip


def test_events_are_stored_once_and_acked_after_commit(world: World) -> None:
    org = world.org()
    device_id, uid, password = world.device(org)
    zone = world.zone(org, device_ids=[device_id])
    p = world.approved(
        **one_off([world.clip().id], [zone], at=NOW + timedelta(hours=1), title="Tin")
    )
    inbox = Inbox(world, device_id)
    c = world.connect(uid, password, inbox, [device_topic(uid, TopicKind.EVENTS_ACK)])
    batch = EventBatch(events=[_event(s, programme_id=p["id"], minutes=s) for s in (1, 2, 3)])
    topic = device_topic(uid, TopicKind.EVENTS)
    c.publish(topic, encode(batch), qos=1).wait_for_publish(5)
    assert wait(lambda: len(inbox.on("/evack")) == 1)
    payload, stored_at_ack = inbox.on("/evack")[0]
    assert decode(TopicKind.EVENTS_ACK, payload).seqs == [1, 2, 3]
    assert stored_at_ack == 3
    # The same batch again (the device never saw the ack): stored once, acked again.
    c.publish(topic, encode(batch), qos=1).wait_for_publish(5)
    assert wait(lambda: len(inbox.on("/evack")) == 2)
    assert decode(TopicKind.EVENTS_ACK, inbox.on("/evack")[1][0]).seqs == [1, 2, 3]
    plays = world.get("/plays", device_id=device_id)
    assert plays["total"] == 3
    newest = plays["items"][0]
    assert (newest["seq"], newest["programme_title"], newest["device_uid"]) == (3, "Tin", uid)
    assert newest["clock_offset_ms"] == 3.5 and newest["outcome"] == "played"
    assert newest["planned_start"].startswith("2031-03-03T00:03:00")


def test_plays_are_filtered_by_device_zone_and_time(sqlite_world: World) -> None:
    w = sqlite_world
    org = w.org()
    a_id, a_uid, a_pw = w.device(org)
    b_id, b_uid, b_pw = w.device(org)
    zone_a = w.zone(org, device_ids=[a_id])
    w.zone(org, device_ids=[b_id])
    for device_id, uid, pw, seqs in ((a_id, a_uid, a_pw, (1, 2)), (b_id, b_uid, b_pw, (7, 8, 9))):
        inbox = Inbox()
        c = w.connect(uid, pw, inbox, [device_topic(uid, TopicKind.EVENTS_ACK)])
        events = [_event(s, programme_id=None, minutes=10 * s, outcome="missed") for s in seqs]
        c.publish(device_topic(uid, TopicKind.EVENTS), encode(EventBatch(events=events)), qos=1)
        assert wait(lambda inbox=inbox: len(inbox.on("/evack")) == 1), device_id  # type: ignore[misc]
    assert w.get("/plays")["total"] == 5
    assert [p["seq"] for p in w.get("/plays", zone_id=zone_a)["items"]] == [2, 1]
    assert w.get("/plays", device_id=b_id)["total"] == 3
    window = {"since": (NOW + timedelta(minutes=20)).isoformat(),
              "until": (NOW + timedelta(minutes=80)).isoformat()}  # fmt: skip
    assert [p["seq"] for p in w.get("/plays", **window)["items"]] == [7, 2]
    page = w.get("/plays", limit=2, offset=1)
    assert [p["seq"] for p in page["items"]] == [8, 7] and page["total"] == 5
    r = w.client.get("/api/v1/plays", params={"since": "2031-03-03T00:00:00"}, headers=w.headers)
    assert r.status_code == 422 and "time zone" in r.json()["detail"]


def test_a_clock_probe_is_answered_with_server_receive_and_send_times(sqlite_world: World) -> None:
    w = sqlite_world
    _id, uid, pw = w.device(w.org())
    inbox = Inbox()
    c = w.connect(uid, pw, inbox, [device_topic(uid, TopicKind.TIME_RESPONSE)])
    t0 = time.time()
    c.publish(device_topic(uid, TopicKind.TIME_REQUEST), encode(TimeRequest(id="p1", t0=t0)), qos=0)
    assert wait(lambda: len(inbox.on("/timeresp")) == 1)
    answer = decode(TopicKind.TIME_RESPONSE, inbox.on("/timeresp")[0][0])
    assert (answer.id, answer.t0) == ("p1", t0)
    assert t0 - 1 < answer.t1 <= answer.t2 < time.time() + 1  # same machine, same clock


GARBAGE: list[tuple[str, bytes]] = [
    ("not_json", b"\xff\xfe not json"),
    ("not_object", b"[1, 2, 3]"),
    ("bad_version", json.dumps({"v": 7}).encode()),
    ("invalid", json.dumps({"v": 1, "type": "events", "events": []}).encode()),
    ("invalid", json.dumps({"v": 1, "type": "clipreq", "sha256": "nope"}).encode()),
    ("invalid", json.dumps({"v": 1, "type": "time_req", "id": "", "t0": "x"}).encode()),
    ("oversized", b"{" + b" " * 70_000 + b"}"),
]


def test_garbage_on_every_new_server_topic_is_counted_and_survived(sqlite_world: World) -> None:
    w = sqlite_world
    _id, uid, pw = w.device(w.org())
    inbox = Inbox()
    c = w.connect(uid, pw, inbox, [device_topic(uid, TopicKind.TIME_RESPONSE),
                                   device_topic(uid, TopicKind.EVENTS_ACK)])  # fmt: skip
    metrics = w.stack.app.state.metrics
    sent: dict[tuple[str, str], int] = {}
    for kind in (TopicKind.EVENTS, TopicKind.CLIP_REQUEST, TopicKind.TIME_REQUEST):
        for reason, payload in GARBAGE:
            c.publish(device_topic(uid, kind), payload, qos=1).wait_for_publish(5)
            sent[(kind.value, reason)] = sent.get((kind.value, reason), 0) + 1
    assert wait(lambda: all(metrics.rejected(k, r) >= n for (k, r), n in sent.items()))
    # Still answering good messages afterwards.
    c.publish(device_topic(uid, TopicKind.TIME_REQUEST), encode(TimeRequest(id="ok", t0=1.0)))
    batch = EventBatch(events=[_event(1, programme_id=None, minutes=0)])
    c.publish(device_topic(uid, TopicKind.EVENTS), encode(batch), qos=1)
    assert wait(lambda: len(inbox.on("/timeresp")) == 1 and len(inbox.on("/evack")) == 1)
    assert w.client.get("/healthz").json()["mqtt"] == "connected"
