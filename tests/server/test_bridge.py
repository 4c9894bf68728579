"""The server's MQTT bridge against a real broker: presence, telemetry, garbage."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from loa_testkit.bridgefix import register_device
from loa_testkit.stack import Stack
from protocol import Birth, Offline, Telemetry, TopicKind, device_topic, encode


def _wait(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def _device_client(api: Stack, uid: str, password: str, will: bytes | None = None) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid, protocol=mqtt.MQTTv5)
    c.username_pw_set(uid, password)
    if will is not None:
        c.will_set(device_topic(uid, TopicKind.STATUS), will, qos=1, retain=True)
    c.connect("127.0.0.1", api.settings.mqtt_port, keepalive=5)
    c.loop_start()
    return c


def _device(api: Stack, device_id: int) -> dict[str, object]:
    r = api.client.get(f"/api/v1/devices/{device_id}", headers=api.headers)
    return dict(r.json())


def _birth(conn_id: str) -> bytes:
    return encode(Birth(conn_id=conn_id, agent_version="test", firmware_profile="sim", boot_time=0))


def test_birth_then_will_marks_online_then_offline(live: Stack) -> None:
    device_id, pw = register_device(live, "bridge-01")
    c = _device_client(live, "bridge-01", pw, will=encode(Offline(conn_id="c1")))
    c.publish(device_topic("bridge-01", TopicKind.STATUS), _birth("c1"), qos=1, retain=True)
    assert _wait(lambda: _device(live, device_id)["online"] is True)
    assert _device(live, device_id)["agent_version"] == "test"
    # Dropping the socket without DISCONNECT makes the broker publish the will.
    c.loop_stop()
    c.socket().close()  # type: ignore[union-attr]
    assert _wait(lambda: _device(live, device_id)["online"] is False, timeout=10)


def test_stale_will_of_an_older_connection_is_ignored(live: Stack) -> None:
    device_id, pw = register_device(live, "bridge-02")
    c = _device_client(live, "bridge-02", pw)
    topic = device_topic("bridge-02", TopicKind.STATUS)
    c.publish(topic, _birth("new"), qos=1, retain=True).wait_for_publish(5)
    c.publish(topic, encode(Offline(conn_id="old")), qos=1, retain=True).wait_for_publish(5)
    c.publish(device_topic("bridge-02", TopicKind.TELEMETRY), b"{}", qos=1).wait_for_publish(5)
    time.sleep(0.5)
    assert _device(live, device_id)["online"] is True
    c.loop_stop()
    c.disconnect()


def test_telemetry_is_stored(live: Stack) -> None:
    device_id, pw = register_device(live, "bridge-03")
    c = _device_client(live, "bridge-03", pw)
    t = Telemetry(
        uptime_s=12,
        load_1m=0.3,
        mem_used_pct=40,
        disk_free_mb=900,
        disk_used_pct=10,
        cpu_temp_c=51.5,
        signal_dbm=-71,
        signal_source="modem",
        agent_version="t",
        firmware_profile="sim",
    )
    c.publish(device_topic("bridge-03", TopicKind.TELEMETRY), encode(t), qos=1).wait_for_publish(5)
    assert _wait(lambda: _device(live, device_id)["telemetry"] is not None)
    assert _device(live, device_id)["telemetry"]["cpu_temp_c"] == 51.5  # type: ignore[index]
    c.loop_stop()
    c.disconnect()


GARBAGE: list[tuple[str, bytes]] = [
    ("not_json", b"\xff\xfe not json"),
    ("not_json", b'{"v": 1, '),
    ("not_object", b"[1, 2, 3]"),
    ("bad_version", json.dumps({"v": 99, "type": "birth"}).encode()),
    ("invalid", json.dumps({"v": 1, "type": "birth", "conn_id": 5}).encode()),
    ("invalid", json.dumps({"v": 1, "type": "telemetry", "uptime_s": "lots"}).encode()),
    ("oversized", b"{" + b" " * 100_000 + b"}"),
]


def test_garbage_on_every_server_topic_is_counted_and_survived(live: Stack) -> None:
    device_id, pw = register_device(live, "bridge-04")
    c = _device_client(live, "bridge-04", pw)
    metrics = live.app.state.metrics
    sent: dict[tuple[str, str], int] = {}
    for kind in (TopicKind.STATUS, TopicKind.TELEMETRY, TopicKind.ACK):
        for reason, payload in GARBAGE:
            c.publish(device_topic("bridge-04", kind), payload, qos=1).wait_for_publish(5)
            sent[(kind.value, reason)] = sent.get((kind.value, reason), 0) + 1
    assert _wait(lambda: all(metrics.rejected(k, r) >= n for (k, r), n in sent.items()))
    # Still alive and still processing good messages afterwards.
    c.publish(device_topic("bridge-04", TopicKind.STATUS), _birth("ok"), qos=1, retain=True)
    assert _wait(lambda: _device(live, device_id)["online"] is True)
    assert live.client.get("/healthz").json()["mqtt"] == "connected"
    text = live.client.get("/metrics").text
    assert 'loa_mqtt_messages_rejected_total{kind="telemetry",reason="oversized"}' in text
    c.loop_stop()
    c.disconnect()


def test_messages_from_unregistered_devices_are_counted(live: Stack) -> None:
    """A server-account publish for an unknown device id is rejected, not stored."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.username_pw_set("loa-server", live.settings.mqtt_secret())
    c.connect("127.0.0.1", live.settings.mqtt_port)
    c.loop_start()
    c.publish(device_topic("ghost-99", TopicKind.STATUS), _birth("x"), qos=1).wait_for_publish(5)
    c.publish("loa/v1/dev/UPPER/status", b"{}", qos=1).wait_for_publish(5)
    metrics = live.app.state.metrics
    assert _wait(lambda: metrics.rejected("status", "unknown_device") >= 1)
    assert _wait(lambda: metrics.rejected("unknown", "bad_topic") >= 1)
    c.loop_stop()
    c.disconnect()


def test_volume_change_is_published_as_retained_desired_state(live: Stack) -> None:
    device_id, pw = register_device(live, "bridge-05")
    r = live.client.patch(f"/api/v1/devices/{device_id}", json={"volume": 33}, headers=live.headers)
    assert r.status_code == 200 and r.json()["state_version"] == 2
    got: list[dict[str, object]] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.username_pw_set("bridge-05", pw)
    c.on_message = lambda _c, _u, m: got.append(json.loads(m.payload))
    c.connect("127.0.0.1", live.settings.mqtt_port)
    c.subscribe(device_topic("bridge-05", TopicKind.STATE), 1)
    c.loop_start()
    assert _wait(lambda: bool(got) and got[-1]["version"] == 2)
    assert got[-1]["volume"] == 33
    c.loop_stop()
    c.disconnect()
