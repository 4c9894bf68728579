"""The planner against a real broker: retained, versioned schedules a raw device receives."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import paho.mqtt.client as mqtt

from protocol import Birth, ScheduleMessage, TopicKind, decode, device_topic, encode
from server.planner import Planner
from server.planner.compile import plan_window
from tests.server.test_programmes_fixtures import (
    NOW,
    World,
    daily,
    one_off,
    sqlite_world,
    wait,
    world,
)

__all__ = ["sqlite_world", "world"]  # fixtures, imported for pytest


class ScheduleInbox:
    """Schedule documents a device client received, in order."""

    def __init__(self) -> None:
        self.messages: list[ScheduleMessage] = []

    def __call__(self, message: mqtt.MQTTMessage) -> None:
        msg = decode(TopicKind.SCHEDULE, bytes(message.payload))
        assert isinstance(msg, ScheduleMessage)
        self.messages.append(msg)

    @property
    def latest(self) -> Any:
        """The newest document received."""
        return self.messages[-1].document

    def has_items(self) -> bool:
        """True once a document with playback items arrived.

        Zone and device changes trigger planning passes of their own, so an empty
        document may arrive before the one the test is waiting for.
        """
        return bool(self.messages) and bool(self.messages[-1].document.items)

    def version(self) -> int:
        """The newest version received (0 before any)."""
        return self.messages[-1].document.version if self.messages else 0


def _device_with_inbox(w: World, org: int) -> tuple[int, str, ScheduleInbox]:
    device_id, uid, password = w.device(org)
    inbox = ScheduleInbox()
    w.connect(uid, password, inbox, [device_topic(uid, TopicKind.SCHEDULE)])
    return device_id, uid, inbox


def test_an_approved_programme_reaches_the_device_as_a_retained_versioned_schedule(
    world: World,
) -> None:
    org = world.org()
    device_id, uid, password = world.device(org)
    zone = world.zone(org, device_ids=[device_id])
    clip = world.clip(duration_s=90)
    p = world.approved(**daily([clip.id], [zone], hour=5))
    # The device connects after the publication: the broker hands it the retained document.
    inbox = ScheduleInbox()
    world.connect(uid, password, inbox, [device_topic(uid, TopicKind.SCHEDULE)])
    assert wait(inbox.has_items)
    doc = inbox.latest
    first = doc.version
    received = len(inbox.messages)
    window = plan_window(NOW, horizon_days=7)
    assert (doc.device_id, doc.horizon_start, doc.horizon_end) == (uid, *window)
    assert len(doc.items) == 7  # 05:00 local from 03-04 (dtstart) to 03-10 (end of window)
    assert {i.programme_id for i in doc.items} == {p["id"]}
    assert [c.sha256 for c in doc.clips] == [clip.sha256]
    assert doc.items[0].end - doc.items[0].start == timedelta(seconds=90)
    # Nothing changed: another pass (even an hour later) publishes no new version.
    world.clock.advance(timedelta(hours=1))
    result = world.planner.run_once()
    assert result is not None and result.documents == [] and result.unchanged >= 1
    time.sleep(0.3)
    assert inbox.version() == first and len(inbox.messages) == received
    # A change does: a second programme gives the next version, with both.
    world.approved(**daily([clip.id], [zone], hour=17, title="Bản tin chiều"))
    assert wait(lambda: inbox.version() == first + 1)
    assert len(inbox.latest.items) == 14
    api = world.get(f"/devices/{device_id}/schedule")
    assert api["version"] == first + 1 and len(api["items"]) == 14
    assert api["reported_schedule_version"] is None and api["in_sync"] is False


def test_the_schedule_endpoint_shows_the_reported_version(sqlite_world: World) -> None:
    w = sqlite_world
    org = w.org()
    device_id, uid, inbox = _device_with_inbox(w, org)
    zone = w.zone(org, device_ids=[device_id])
    w.approved(**one_off([w.clip().id], [zone], at=NOW + timedelta(hours=2)))
    assert wait(inbox.has_items)
    birth = Birth(conn_id="c1", agent_version="t", firmware_profile="sim", boot_time=0,
                  schedule_version=inbox.version())  # fmt: skip
    w.clients[0].publish(device_topic(uid, TopicKind.STATUS), encode(birth), qos=1, retain=True)
    assert wait(lambda: w.get(f"/devices/{device_id}/schedule")["in_sync"] is True)
    assert w.client.get("/api/v1/devices/999/schedule", headers=w.headers).status_code == 404


def test_a_device_in_two_zones_gets_the_union(sqlite_world: World) -> None:
    w = sqlite_world
    org = w.org()
    both_id, _both_uid, both = _device_with_inbox(w, org)
    east_id, _east_uid, east_only = _device_with_inbox(w, org)
    east = w.zone(org, device_ids=[both_id, east_id])
    west = w.zone(org, device_ids=[both_id])
    clip_a, clip_b = w.clip(), w.clip()
    pa = w.approved(**one_off([clip_a.id], [east], at=NOW + timedelta(hours=1), title="A"))
    pb = w.approved(**one_off([clip_b.id], [west], at=NOW + timedelta(hours=1), title="B"))
    assert wait(lambda: len(both.messages) > 0 and len(both.latest.items) == 2)
    assert {i.programme_id for i in both.latest.items} == {pa["id"], pb["id"]}
    assert {c.sha256 for c in both.latest.clips} == {clip_a.sha256, clip_b.sha256}
    assert wait(lambda: len(east_only.messages) > 0)
    assert [i.programme_id for i in east_only.latest.items] == [pa["id"]]


def test_cancelling_removes_the_items_in_a_new_version(sqlite_world: World) -> None:
    w = sqlite_world
    org = w.org()
    device_id, _uid, inbox = _device_with_inbox(w, org)
    zone = w.zone(org, device_ids=[device_id])
    keep = w.approved(**daily([w.clip().id], [zone], hour=6, title="Giữ"))
    drop = w.approved(**daily([w.clip().id], [zone], hour=18, title="Bỏ"))
    assert wait(lambda: inbox.version() > 0 and len(inbox.latest.items) == 14)
    before = inbox.version()
    w.post(f"/programmes/{drop['id']}/cancel", {"reason": "thôi"}, expect=200)
    assert w.planner.wait_idle(30)
    assert wait(lambda: inbox.version() == before + 1)
    assert {i.programme_id for i in inbox.latest.items} == {keep["id"]}
    assert len(inbox.latest.clips) == 1


def test_statuses_follow_the_injected_clock(sqlite_world: World) -> None:
    w = sqlite_world
    org = w.org()
    zone = w.zone(org)
    p = w.approved(**one_off([w.clip(duration_s=60).id], [zone], at=NOW + timedelta(hours=1)))
    planner = w.planner
    planner.run_once(now=NOW + timedelta(minutes=59))
    assert w.get(f"/programmes/{p['id']}")["status"] == "approved"
    planner.run_once(now=NOW + timedelta(hours=1, seconds=30))
    assert w.get(f"/programmes/{p['id']}")["status"] == "active"
    planner.run_once(now=NOW + timedelta(hours=1, seconds=61))
    assert w.get(f"/programmes/{p['id']}")["status"] == "active"  # its slot is still open
    planner.run_once(now=NOW + timedelta(hours=1, minutes=6, seconds=1))
    detail = w.get(f"/programmes/{p['id']}")
    assert detail["status"] == "ended"
    assert [(h["to_status"], h["user_id"]) for h in detail["history"][-2:]] == [
        ("active", None), ("ended", None),
    ]  # fmt: skip
    assert (
        w.client.post(f"/api/v1/programmes/{p['id']}/cancel", headers=w.headers).status_code == 409
    )


def test_an_item_pushed_past_its_planned_end_stays_in_the_schedule(sqlite_world: World) -> None:
    """A bulletin at the slot head shifts the commune's item: a pass in its tail keeps it."""
    w = sqlite_world
    org = w.org()
    device_id, _uid, inbox = _device_with_inbox(w, org)
    zone = w.zone(org, device_ids=[device_id])
    p = w.approved(**one_off([w.clip(duration_s=60).id], [zone], at=NOW + timedelta(hours=1)))
    assert wait(inbox.has_items)
    planner = w.planner
    tail = planner.run_once(now=NOW + timedelta(hours=1, minutes=2))  # planned end + 1 min
    assert tail is not None
    assert tail.documents == [] and tail.unchanged == 1  # still the item, unchanged
    assert w.get(f"/programmes/{p['id']}")["status"] == "active"
    before = inbox.version()
    closed = planner.run_once(now=NOW + timedelta(hours=1, minutes=6, seconds=1))
    assert closed is not None
    assert [doc.items for doc in closed.documents] == [()]
    assert wait(lambda: inbox.version() > before)
    assert not inbox.latest.items
    assert w.get(f"/programmes/{p['id']}")["status"] == "ended"


def test_a_recurring_programme_ends_with_its_validity(sqlite_world: World) -> None:
    w = sqlite_world
    zone = w.zone(w.org())
    body = daily([w.clip(duration_s=60).id], [zone], hour=5, valid_until="2031-03-06T00:00:00Z")
    p = w.approved(**body)
    w.planner.run_once(now=NOW + timedelta(days=1))
    assert w.get(f"/programmes/{p['id']}")["status"] == "active"
    w.planner.run_once(now=NOW + timedelta(days=3, seconds=61))
    assert w.get(f"/programmes/{p['id']}")["status"] == "ended"


def test_a_second_planner_on_the_same_database_does_not_plan(sqlite_world: World) -> None:
    w = sqlite_world
    app = w.stack.app
    leader: Planner = w.planner
    assert leader.is_leader
    other = Planner(
        engine=app.state.engine, session_factory=app.state.session_factory,
        publisher=app.state.bridge, clock=w.clock, tick_s=3600,
    )  # fmt: skip
    other.start()
    try:
        assert not other.is_leader
        assert other.run_once() is None
        org = w.org()
        device_id, _uid, inbox = _device_with_inbox(w, org)
        zone = w.zone(org, device_ids=[device_id])
        w.approved(**one_off([w.clip().id], [zone], at=NOW + timedelta(hours=1)))
        assert wait(inbox.has_items)
        before = inbox.version()
        # A change made in "another process": its request is left in the database ...
        w.set_zone_devices(zone, [])
        other.request_replan()
        assert other.runs == 0
        # ... and the leader carries it out at its next tick.
        leader.tick()
        assert leader.wait_idle(30)
        assert wait(lambda: inbox.version() == before + 1)
        assert inbox.latest.items == ()
        # When the leader goes, the other takes over at its next tick.
        leader.stop()
        other.tick()
        assert other.is_leader
        assert other.wait_idle(30) and other.runs == 1
    finally:
        other.stop()
