"""What the device pages stand on: commands with acks, telemetry history, health warnings."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from protocol import Ack, Birth, Command, Telemetry, TopicKind, decode, device_topic, encode
from server.devices.health import health_flags
from server.devices.models import Device, TelemetrySample
from server.devices.telemetry import SampleThrottle, prune_samples
from tests.server.test_permissions_fixtures import PermWorld, running_perm_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[PermWorld]:
    """Communes A and B on SQLite with a broker (MQTT round trips)."""
    with running_perm_world("sqlite", tmp_path) as w:
        yield w


def wait(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll until pred() holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def connect_device(w: PermWorld, org: int) -> tuple[int, str, mqtt.Client, list[Command]]:
    """Register a device and connect a raw paho client as it, subscribed to its commands."""
    n = w.next()
    uid = f"tram-{n:03d}"
    body = {"uid": uid, "name": f"Cụm {n}", "org_unit_id": org, "firmware_profile": "sim"}
    answer = w.admin("POST", "/devices", body, expect=201)
    received: list[Command] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid, protocol=mqtt.MQTTv5)
    client.username_pw_set(uid, answer["credentials"]["password"])

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        command = decode(TopicKind.COMMAND, msg.payload)
        assert isinstance(command, Command)
        received.append(command)

    subscribed: list[int] = []
    client.on_message = on_message
    client.on_subscribe = lambda _c, _u, mid, _rc, _p: subscribed.append(mid)
    client.connect("127.0.0.1", w.stack.settings.mqtt_port, keepalive=10)
    client.loop_start()
    mid = client.subscribe(device_topic(uid, TopicKind.COMMAND), 1)[1]
    assert wait(lambda: mid in subscribed)
    return int(answer["device"]["id"]), uid, client, received


def telemetry(temp: float = 51.5) -> Telemetry:
    """A health sample."""
    return Telemetry(
        uptime_s=3600,
        load_1m=0.4,
        mem_used_pct=41,
        disk_free_mb=5200,
        disk_used_pct=37,
        cpu_temp_c=temp,
        signal_dbm=-83,
        signal_source="modem",
        agent_version="0.1.0",
        firmware_profile="sim",
        schedule_version=1,
    )


def test_a_command_reaches_the_device_and_its_ack_is_recorded(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    device_id, uid, client, received = connect_device(w, w.a.village)
    tech = w.headers("technician")
    r = w.client.post(
        f"/api/v1/devices/{device_id}/commands",
        json={"name": "set_volume", "volume": 35},
        headers=tech,
    )
    assert r.status_code == 202, r.text
    sent = r.json()
    assert sent["status"] == "sent" and sent["args"] == {"volume": 35}
    assert wait(lambda: len(received) == 1)
    command = received[0]
    assert (command.id, command.name, command.args) == (sent["id"], "set_volume", {"volume": 35})
    assert command.expires_at > time.time()
    ack = Ack(id=command.id, ok=True, detail="volume set to 35%")
    client.publish(device_topic(uid, TopicKind.ACK), encode(ack), qos=1).wait_for_publish(5)

    def answered() -> dict[str, Any]:
        rows = w.client.get(f"/api/v1/devices/{device_id}/commands", headers=tech).json()
        return dict(rows[0])

    assert wait(lambda: answered()["status"] == "ok")
    assert answered()["detail"] == "volume set to 35%" and answered()["acked_at"]
    # A refusal is recorded as failed; an ack for another device's command changes nothing.
    r = w.client.post(
        f"/api/v1/devices/{device_id}/commands", json={"name": "restart_agent"}, headers=tech
    )
    assert wait(lambda: len(received) == 2)
    other_id, other_uid, other, _ = connect_device(w, w.a.village)
    forged = encode(Ack(id=received[1].id, ok=True, detail="forged"))
    bridge = w.stack.app.state.bridge
    before = bridge.processed
    other.publish(device_topic(other_uid, TopicKind.ACK), forged, qos=1).wait_for_publish(5)
    assert wait(lambda: bridge.processed > before)
    assert answered()["status"] == "sent"
    refused = Ack(id=received[1].id, ok=False, detail="not allowed now")
    client.publish(device_topic(uid, TopicKind.ACK), encode(refused), qos=1).wait_for_publish(5)
    assert wait(lambda: answered()["status"] == "failed")
    assert answered()["detail"] == "not allowed now"
    assert other_id != device_id
    for c in (client, other):
        c.loop_stop()
        c.disconnect()


def test_commands_are_checked_before_they_are_sent(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    tech = w.headers("technician")
    url = f"/api/v1/devices/{w.a.device}/commands"
    cases = [
        ({"name": "set_volume"}, "needs a volume"),
        ({"name": "resync", "volume": 3}, "only for set_volume"),
        ({"name": "resync", "seconds": 3}, "only for test_tone"),
        ({"name": "test_tone", "seconds": 99}, "seconds"),
        ({"name": "format_disk"}, "name"),
    ]
    for body, words in cases:
        r = w.client.post(url, json=body, headers=tech)
        assert r.status_code == 422 and words in r.json()["detail"], (body, r.text)
    r = w.client.get(url, headers=tech)
    assert r.json() == []


def test_an_unanswered_command_shows_no_answer_after_it_expires(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    tech = w.headers("technician")
    r = w.client.post(
        f"/api/v1/devices/{w.a.device}/commands", json={"name": "resync"}, headers=tech
    )
    assert r.json()["status"] == "sent"
    from server.devices.models import DeviceCommand

    with w.stack.session() as db:
        row = db.get(DeviceCommand, r.json()["id"])
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    rows = w.client.get(f"/api/v1/devices/{w.a.device}/commands", headers=tech).json()
    assert rows[0]["status"] == "no_answer"


def test_telemetry_is_kept_as_history_one_sample_per_interval(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    device_id, uid, client, _ = connect_device(w, w.a.village)
    birth = Birth(conn_id="c1", agent_version="0.1.0", firmware_profile="sim", boot_time=0)
    client.publish(device_topic(uid, TopicKind.STATUS), encode(birth), qos=1, retain=True)
    for temp in (50.0, 60.0, 70.0):
        client.publish(
            device_topic(uid, TopicKind.TELEMETRY), encode(telemetry(temp)), qos=1
        ).wait_for_publish(5)
    tech = w.headers("viewer")
    url = f"/api/v1/devices/{device_id}/telemetry"

    def latest_temperature() -> float | None:
        # None until the first telemetry message has been stored.
        sample = w.client.get(f"/api/v1/devices/{device_id}", headers=tech).json()["telemetry"]
        return None if sample is None else sample["cpu_temp_c"]

    assert wait(lambda: latest_temperature() == 70.0)
    history = w.client.get(url, headers=tech).json()
    # The first message of the interval is stored; the next two only update "latest".
    assert [p["cpu_temp_c"] for p in history["points"]] == [50.0]
    assert history["points"][0]["signal_dbm"] == -83
    r = w.client.get(
        url, params={"since": "2031-01-02T00:00:00Z", "until": "2031-01-01T00:00:00Z"}, headers=tech
    )
    assert r.status_code == 422
    client.loop_stop()
    client.disconnect()


def test_the_throttle_and_the_retention() -> None:
    now = [0.0]
    throttle = SampleThrottle(
        interval_s=300, retention=timedelta(days=7), prune_every_s=3600, clock=lambda: now[0]
    )
    assert throttle.due(1) and not throttle.due(1) and throttle.due(2)
    now[0] = 299
    assert not throttle.due(1)
    now[0] = 300
    assert throttle.due(1)
    assert throttle.prune_due() and not throttle.prune_due()
    now[0] = 3900
    assert throttle.prune_due()


def test_old_samples_are_pruned(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    now = datetime.now(UTC)
    with w.stack.session() as db:
        for age in (1, 6, 8, 30):
            db.add(
                TelemetrySample(device_id=w.a.device, at=now - timedelta(days=age), cpu_temp_c=40.0)
            )
    with w.stack.session() as db:
        prune_samples(db, before=now - timedelta(days=7))
    with w.stack.session() as db:
        left = db.scalar(select(func.count()).select_from(TelemetrySample))
    assert left == 2


def test_health_flags() -> None:
    now = datetime(2031, 3, 3, tzinfo=UTC)
    device = Device(
        uid="x",
        name="x",
        org_unit_id=1,
        firmware_profile="sim",
        mqtt_password_hash="",
        online=True,
        telemetry_at=now,
        reported_schedule_version=3,
        telemetry=json.loads(telemetry(80.0).model_dump_json()),
    )
    assert health_flags(device, now=now, published_schedule=3) == ["hot"]
    assert health_flags(device, now=now + timedelta(minutes=11), published_schedule=4) == [
        "hot",
        "stale",
        "schedule_behind",
    ]
    device.telemetry = {"clock_error_ms": 35.0}  # live audio would echo between clusters
    assert health_flags(device, now=now, published_schedule=3) == ["clock_unsynced"]
    device.telemetry = {"clock_error_ms": 0.4}
    assert health_flags(device, now=now, published_schedule=3) == []
    device.online = False
    device.telemetry = {"disk_used_pct": 95, "signal_dbm": -110}
    assert health_flags(device, now=now, published_schedule=None) == [
        "offline",
        "disk_full",
        "weak_signal",
    ]
