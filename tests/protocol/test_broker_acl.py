"""The generated ACL holds against a real Mosquitto: devices reach only their own topics."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from loa_testkit.brokerfix import TestBroker
from protocol import SERVER_USERNAME, TopicKind, device_topic


def _client(b: TestBroker, username: str | None, password: str | None) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if username is not None:
        c.username_pw_set(username, password)
    return c


def _connect_code(b: TestBroker, username: str | None, password: str | None) -> int:
    """Connect synchronously and return the CONNACK reason code value."""
    c = _client(b, username, password)
    result: list[int] = []
    c.on_connect = lambda _c, _u, _f, rc, _p: result.append(rc.value)
    c.connect(b.host, b.port)
    for _ in range(50):
        c.loop(0.1)
        if result:
            break
    c.disconnect()
    return result[0]


def test_anonymous_is_refused(broker: TestBroker) -> None:
    assert _connect_code(broker, None, None) != 0


def test_wrong_password_is_refused(broker: TestBroker) -> None:
    broker.add_device("acl-wrongpw")
    assert _connect_code(broker, "acl-wrongpw", "not-the-password") != 0


def test_device_and_server_accounts_connect(broker: TestBroker) -> None:
    pw = broker.add_device("acl-ok")
    assert _connect_code(broker, "acl-ok", pw) == 0
    assert _connect_code(broker, SERVER_USERNAME, broker.server_password) == 0


def test_revoked_device_cannot_connect(broker: TestBroker) -> None:
    pw = broker.add_device("acl-revoked")
    assert _connect_code(broker, "acl-revoked", pw) == 0
    broker.revoke_device("acl-revoked")
    assert _connect_code(broker, "acl-revoked", pw) != 0


def _wait_until(pred: object, timeout: float = 3.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not pred():  # type: ignore[operator]
        time.sleep(0.05)


def test_device_reads_nothing_of_other_devices(broker: TestBroker) -> None:
    """Subscribing to '#' or another device's topics yields only the device's own messages.

    Mosquitto 2.0 grants such subscriptions and filters on delivery, so what is checked
    here is what actually arrives.
    """
    import time

    pw = broker.add_device("acl-reader")
    broker.add_device("acl-other")
    got: list[str] = []
    dev = _client(broker, "acl-reader", pw)
    dev.on_message = lambda _c, _u, m: got.append(m.topic)
    dev.connect(broker.host, broker.port)
    dev.subscribe(
        [("#", 1), ("loa/v1/dev/+/state", 1), (device_topic("acl-other", TopicKind.COMMAND), 1)]
    )
    dev.loop_start()
    server = _client(broker, SERVER_USERNAME, broker.server_password)
    server.connect(broker.host, broker.port)
    server.loop_start()
    try:
        time.sleep(0.3)
        for kind in (TopicKind.COMMAND, TopicKind.STATE):
            server.publish(device_topic("acl-other", kind), b"{}", qos=1).wait_for_publish(5)
        own = device_topic("acl-reader", TopicKind.COMMAND)
        server.publish(own, b"{}", qos=1).wait_for_publish(5)
        _wait_until(lambda: own in got)
        time.sleep(0.3)
    finally:
        dev.loop_stop()
        server.loop_stop()
    assert got == [own]


def test_device_cannot_publish_to_another_device(broker: TestBroker) -> None:
    """A spoofed telemetry publish never reaches the server account."""
    pw_a = broker.add_device("acl-spoofer")
    broker.add_device("acl-victim")
    received: list[str] = []
    server = _client(broker, SERVER_USERNAME, broker.server_password)
    # Retained messages other tests left on the shared broker are not part of this check.
    server.on_message = lambda _c, _u, m: None if m.retain else received.append(m.topic)
    server.connect(broker.host, broker.port)
    server.subscribe("loa/v1/#", 1)
    server.loop_start()
    dev = _client(broker, "acl-spoofer", pw_a)
    dev.connect(broker.host, broker.port)
    dev.loop_start()
    try:
        import time

        time.sleep(0.3)
        dev.publish(device_topic("acl-victim", TopicKind.TELEMETRY), b"{}", qos=1).wait_for_publish(
            5
        )
        dev.publish(
            device_topic("acl-spoofer", TopicKind.TELEMETRY), b"{}", qos=1
        ).wait_for_publish(5)
        # A device must not be able to write its own desired state either.
        dev.publish(device_topic("acl-spoofer", TopicKind.STATE), b"{}", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 3
        while (
            time.monotonic() < deadline
            and device_topic("acl-spoofer", TopicKind.TELEMETRY) not in received
        ):
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        dev.loop_stop()
        server.loop_stop()
    assert received == [device_topic("acl-spoofer", TopicKind.TELEMETRY)]


pytestmark = pytest.mark.slow
