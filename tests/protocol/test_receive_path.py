"""MqttLink's lean receive path: bursts read at once, plain QoS 0 publishes without properties."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import paho.mqtt._packet as paho_packet
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from loa_testkit.brokerfix import TestBroker
from protocol import SERVER_USERNAME
from protocol.mqtt_client import MqttLink

TOPIC = "loa/v1/zone/7/live/receive-path"


class _CountedProperties(Properties):
    made = 0

    def __init__(self, packet_type: int) -> None:
        type(self).made += 1
        super().__init__(packet_type)  # type: ignore[no-untyped-call]


def _publisher(b: TestBroker) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.username_pw_set(SERVER_USERNAME, b.server_password)
    connected = threading.Event()
    c.on_connect = lambda *_a: connected.set()
    c.connect(b.host, b.server_port)
    c.loop_start()
    assert connected.wait(10)
    return c


async def _receive(b: TestBroker, send: Any, expected: int) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    done = asyncio.Event()

    def on_message(topic: str, payload: bytes) -> None:
        got.append((topic, payload))
        if len(got) >= expected:
            done.set()

    link = MqttLink(
        client_id="receive-path", host=b.host, port=b.server_port, username=SERVER_USERNAME,
        password=b.server_password, on_message=on_message,
    )  # fmt: skip
    link.subscribe(f"{TOPIC}/#", 1)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        await asyncio.sleep(0.3)  # the subscription is in place
        await asyncio.to_thread(send)
        await asyncio.wait_for(done.wait(), 15)
        await asyncio.sleep(0.2)  # nothing more arrives
    finally:
        await link.close()
        task.cancel()
    return got


def test_a_burst_of_frames_and_other_messages_arrive_whole_and_in_order(
    broker: TestBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paho_packet, "Properties", _CountedProperties)
    frames = [(f"{TOPIC}/f", bytes([i % 256]) * (60 + i)) for i in range(400)]
    big = (f"{TOPIC}/big", bytes(range(256)) * 800)  # 200 kB: many reads, split packets
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = ("k", "v")
    expected = [*frames[:200], (f"{TOPIC}/props", b"p"), (f"{TOPIC}/q1", b"q"), big, *frames[200:]]
    pub = _publisher(broker)

    def send() -> None:
        _CountedProperties.made = 0  # connecting and subscribing decode properties too
        for topic, payload in frames[:200]:
            pub.publish(topic, payload, qos=0)
        pub.publish(f"{TOPIC}/props", b"p", qos=0, properties=props)
        pub.publish(f"{TOPIC}/q1", b"q", qos=1)
        pub.publish(*big, qos=0)
        for topic, payload in frames[200:]:
            pub.publish(topic, payload, qos=0)

    try:
        got = asyncio.run(_receive(broker, send, len(expected)))
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert got == expected
    # paho's per-message MQTT 5 properties only for the messages that need its path: the one
    # with a property, the QoS 1 one (and the publisher's PUBACK for it).
    assert _CountedProperties.made <= 3
