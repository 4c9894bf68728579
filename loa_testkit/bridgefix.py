"""Scaffolding for tests that drive the server's MQTT bridge as a registered device would."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from loa_testkit.brokerfix import HOST
from loa_testkit.stack import Stack
from server.mqtt_bridge import MqttBridge


def register_device(stack: Stack, uid: str) -> tuple[int, str]:
    """Register a device in a commune of its own; its id and broker password."""
    unit = stack.client.post(
        "/api/v1/org-units", json={"name": f"Xã {uid}", "kind": "commune"}, headers=stack.headers
    ).json()["id"]
    r = stack.client.post(
        "/api/v1/devices",
        json={"uid": uid, "name": uid, "org_unit_id": unit, "firmware_profile": "sim"},
        headers=stack.headers,
    )
    assert r.status_code == 201, r.text
    return r.json()["device"]["id"], r.json()["credentials"]["password"]


def device_client(
    stack: Stack, uid: str, password: str, *, keepalive: int = 60, inflight: int | None = None
) -> mqtt.Client:
    """A paho client connected to the server's broker with a device's credentials, loop running."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid, protocol=mqtt.MQTTv5)
    client.username_pw_set(uid, password)
    if inflight is not None:
        client.max_inflight_messages_set(inflight)
    client.connect(HOST, stack.settings.mqtt_port, keepalive=keepalive)
    client.loop_start()
    return client


def bridge_of(stack: Stack) -> MqttBridge:
    """The running app's MQTT bridge."""
    bridge = stack.app.state.bridge
    assert isinstance(bridge, MqttBridge)
    return bridge
