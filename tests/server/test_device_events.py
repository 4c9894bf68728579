"""Device use cases reach the broker through the outbox: after the commit, or by the sweep."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from loa_testkit.stack import Stack, database, server_stack
from protocol import Message, TopicKind, device_topic
from server.db import session_scope
from server.devices.models import DeviceCommand
from server.events.dispatch import Dispatcher
from server.events.models import OutboxEvent
from server.events.outbox import LEASE

States = list[dict[str, Any]]


def _wait(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


class FailOnce:
    """The bridge, except that its first publish fails as if the broker were unreachable."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failures = 0

    def publish(self, kind: TopicKind, device_uid: str, message: Message) -> None:
        if self.failures == 0:
            self.failures += 1
            raise ConnectionError("broker unreachable")
        self.inner.publish(kind, device_uid, message)


def _register(live: Stack, uid: str) -> tuple[int, str]:
    post = live.client.post
    unit = post("/api/v1/org-units", json={"name": f"Xã {uid}", "kind": "commune"},
                headers=live.headers).json()["id"]  # fmt: skip
    r = post("/api/v1/devices", json={"uid": uid, "name": uid, "org_unit_id": unit,
             "firmware_profile": "sim"}, headers=live.headers)  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["device"]["id"], r.json()["credentials"]["password"]


def _state_listener(
    live: Stack, uid: str, password: str
) -> tuple[mqtt.Client, list[dict[str, Any]]]:
    """The device itself, reading its retained desired state (resubscribes on reconnect)."""
    states: States = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid, protocol=mqtt.MQTTv5)
    c.username_pw_set(uid, password)
    c.on_connect = lambda cl, _u, _f, rc, _p: (
        cl.subscribe(device_topic(uid, TopicKind.STATE), 1) if not rc.is_failure else None
    )
    c.on_message = lambda _c, _u, m: states.append(json.loads(m.payload)) if m.payload else None
    c.connect("127.0.0.1", live.settings.mqtt_port)
    c.loop_start()
    return c, states


def _pending(live: Stack) -> list[tuple[str, int]]:
    with session_scope(live.app.state.session_factory) as db:
        rows = db.scalars(select(OutboxEvent).where(OutboxEvent.done_at.is_(None)))
        return [(row.kind, row.attempts) for row in rows]


def test_a_volume_change_arrives_as_retained_state(live: Stack) -> None:
    device_id, password = _register(live, "events-01")
    c, states = _state_listener(live, "events-01", password)
    try:
        assert _wait(lambda: bool(states))  # the state published at registration
        first = states[-1]
        r = live.client.patch(f"/api/v1/devices/{device_id}", json={"volume": 42},
                              headers=live.headers)  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["volume"] == 42 and r.json()["state_version"] == first["version"] + 1
        assert _wait(lambda: states[-1]["volume"] == 42)
        assert states[-1]["version"] == first["version"] + 1
        assert _pending(live) == []
    finally:
        c.loop_stop()
        c.disconnect()
    # Retained: a device connecting only now still reads the new volume.
    late, seen = _state_listener(live, "events-01", password)
    try:
        assert _wait(lambda: bool(seen)) and seen[-1]["volume"] == 42
    finally:
        late.loop_stop()
        late.disconnect()


def test_a_failed_dispatch_stays_pending_and_the_sweep_publishes_it(live: Stack) -> None:
    device_id, password = _register(live, "events-02")
    dispatcher: Dispatcher = live.app.state.dispatcher
    c, states = _state_listener(live, "events-02", password)
    real_outlet, real_clock = dispatcher.outlet, dispatcher.clock
    try:
        assert _wait(lambda: bool(states))
        outlet = FailOnce(real_outlet)
        dispatcher.outlet = outlet
        r = live.client.patch(f"/api/v1/devices/{device_id}", json={"volume": 17},
                              headers=live.headers)  # fmt: skip
        # The change is committed and answered even though its publication failed.
        assert r.status_code == 200 and r.json()["volume"] == 17, r.text
        assert outlet.failures == 1
        assert _pending(live) == [("desired_state_changed", 1)]
        time.sleep(1.0)
        assert all(s["volume"] != 17 for s in states)
        # The failed attempt holds a lease; the background sweep (a worker thread) keeps the
        # real time, so only this thread's sweep sees the lease run out and it alone retries.
        me = threading.get_ident()

        def later() -> datetime:
            now: datetime = real_clock()
            return now + LEASE + timedelta(seconds=1) if threading.get_ident() == me else now

        dispatcher.clock = later
        assert dispatcher.sweep() == 1
        assert _wait(lambda: bool(states) and states[-1]["volume"] == 17)
        assert _pending(live) == []
    finally:
        dispatcher.outlet, dispatcher.clock = real_outlet, real_clock
        c.loop_stop()
        c.disconnect()


def test_a_test_tone_is_stored_before_it_reaches_the_device(live: Stack) -> None:
    device_id, password = _register(live, "events-03")
    seen: list[tuple[dict[str, Any], int]] = []  # (command, rows stored when it arrived)

    def on_command(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        with session_scope(live.app.state.session_factory) as db:
            stored = len(list(db.scalars(select(DeviceCommand.id))))
        seen.append((json.loads(m.payload), stored))

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="events-03", protocol=mqtt.MQTTv5)
    c.username_pw_set("events-03", password)
    c.on_connect = lambda cl, _u, _f, rc, _p: (
        cl.subscribe(device_topic("events-03", TopicKind.COMMAND), 1) if not rc.is_failure else None
    )
    c.on_message = on_command
    subscribed: list[int] = []
    c.on_subscribe = lambda *_a: subscribed.append(1)
    c.connect("127.0.0.1", live.settings.mqtt_port)
    c.loop_start()
    try:
        assert _wait(lambda: bool(subscribed))
        tone = {"name": "test_tone", "seconds": 2}
        r = live.client.post(f"/api/v1/devices/{device_id}/commands", json=tone,
                             headers=live.headers)  # fmt: skip
        assert r.status_code == 202, r.text
        assert _wait(lambda: bool(seen))
        command, stored = seen[0]
        assert command["id"] == r.json()["id"] and command["args"] == {"seconds": 2}
        assert stored == 1
        assert _pending(live) == []
    finally:
        c.loop_stop()
        c.disconnect()


def test_without_mqtt_commands_answer_503_after_the_reach_check(tmp_path: Path) -> None:
    with (
        database("sqlite", tmp_path) as url,
        server_stack(url, tmp_path / "data", with_broker=False) as stack,
    ):
        unit = stack.client.post("/api/v1/org-units", json={"name": "Xã Tắt", "kind": "commune"},
                                 headers=stack.headers).json()["id"]  # fmt: skip
        r = stack.client.post("/api/v1/devices", json={"uid": "events-04", "name": "t",
                              "org_unit_id": unit, "firmware_profile": "sim"},
                              headers=stack.headers)  # fmt: skip
        device_id = r.json()["device"]["id"]
        tone = {"name": "test_tone"}
        r = stack.client.post(f"/api/v1/devices/{device_id}/commands", json=tone,
                              headers=stack.headers)  # fmt: skip
        assert r.status_code == 503, r.text
        assert r.json()["detail"] == "This server has no MQTT connection; commands are off."
        r = stack.client.post("/api/v1/devices/999999/commands", json=tone, headers=stack.headers)
        assert r.status_code == 404 and r.json()["detail"] == "Device 999999 does not exist."
        with session_scope(stack.app.state.session_factory) as db:
            assert list(db.scalars(select(DeviceCommand.id))) == []
