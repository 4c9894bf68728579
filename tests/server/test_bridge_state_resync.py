"""A device whose birth reports an older desired state gets it again (it needs its zones)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from loa_testkit.stack import Stack
from protocol import Birth, TopicKind, device_topic, encode


def _wait(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_a_birth_without_the_current_desired_state_gets_it_published(live: Stack) -> None:
    post = live.client.post
    unit = post("/api/v1/org-units", json={"name": "Xã Resync", "kind": "commune"},
                headers=live.headers).json()["id"]  # fmt: skip
    r = post("/api/v1/devices", json={"uid": "resync-01", "name": "r", "org_unit_id": unit,
             "firmware_profile": "sim"}, headers=live.headers)  # fmt: skip
    device_id, password = r.json()["device"]["id"], r.json()["credentials"]["password"]
    zone = post("/api/v1/zones", json={"org_unit_id": unit, "name": "Chợ"}, headers=live.headers)
    assert zone.status_code == 201, zone.text
    r = live.client.put(f"/api/v1/zones/{zone.json()['id']}/devices",
                        json={"device_ids": [device_id]}, headers=live.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    states: list[dict[str, object]] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="resync-01", protocol=mqtt.MQTTv5)
    c.username_pw_set("resync-01", password)
    c.on_message = lambda _c, _u, m: states.append(json.loads(m.payload)) if m.payload else None
    c.connect("127.0.0.1", live.settings.mqtt_port)
    c.loop_start()
    try:
        c.subscribe(device_topic("resync-01", TopicKind.STATE), 1)
        assert _wait(lambda: bool(states))  # the retained state the API published
        held = states[-1]
        assert held["zone_ids"] == [zone.json()["id"]]

        def birth(conn_id: str, state_version: int | None) -> None:
            b = Birth(conn_id=conn_id, agent_version="t", firmware_profile="sim", boot_time=1.0,
                      state_version=state_version)  # fmt: skip
            topic = device_topic("resync-01", TopicKind.STATUS)
            c.publish(topic, encode(b), qos=1).wait_for_publish(5)

        # Up to date: nothing is sent again.
        birth("c1", int(str(held["version"])))
        time.sleep(1.0)
        assert len(states) == 1
        # A device that lost it (or a database-seeded one that never got it) is sent it again.
        birth("c2", None)
        assert _wait(lambda: len(states) == 2)
        assert states[-1] == held | {"ts": states[-1]["ts"]}
    finally:
        c.loop_stop()
        c.disconnect()
