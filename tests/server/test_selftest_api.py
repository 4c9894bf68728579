"""Issue 17, server side: device events through the bridge set health; the self-test API."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from protocol import (
    DeviceEvent,
    EventBatch,
    SelfTestFigures,
    Telemetry,
    TopicKind,
    decode,
    device_topic,
    encode,
)
from protocol.messages import SELFTEST_BANDS
from server.db import session_scope
from server.devices.health import health_flags
from server.devices.models import Device
from tests.server.test_programmes_fixtures import NOW, World, sqlite_world, wait, world

__all__ = ["sqlite_world", "world"]  # fixtures, imported for pytest
H = timedelta(hours=1)
D = timedelta(days=1)


class Box:
    """Messages a device client received, by topic suffix."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()

    def __call__(self, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def on(self, suffix: str) -> list[bytes]:
        """Payloads received on topics ending with suffix."""
        with self._lock:
            return [p for t, p in self.messages if t.endswith(suffix)]


def _figures(level: float) -> SelfTestFigures:
    return SelfTestFigures(
        level_db=level, bands_db=dict.fromkeys(SELFTEST_BANDS, level), noise_floor_dbfs=-75.0,
        distortion_pct=0.4, snr_db=45.0, latency_ms=12.5,
    )  # fmt: skip


def _test(
    seq: int, at: datetime, code: str, level: float | None = None, **more: Any
) -> DeviceEvent:
    figures = _figures(level) if level is not None else None
    return DeviceEvent(
        seq=seq, kind="selftest", at=at.timestamp(), code=code, figures=figures,
        detail=f"Kết quả: {code}", **more,
    )  # fmt: skip


class Cluster:
    """One registered device acting over MQTT as its agent would."""

    def __init__(self, w: World, org: int) -> None:
        self.w = w
        self.id, self.uid, password = w.device(org)
        self.box = Box()
        topics = [device_topic(self.uid, k) for k in (TopicKind.EVENTS_ACK, TopicKind.STATE)]
        self.client = w.connect(self.uid, password, self.box, topics)

    def send(self, *events: DeviceEvent) -> None:
        """Publish a batch and wait until the server acknowledged (stored) its seqs."""
        before = len(self.box.on("/evack"))
        batch = encode(EventBatch(events=list(events)))
        self.client.publish(device_topic(self.uid, TopicKind.EVENTS), batch, qos=1)
        assert wait(lambda: len(self.box.on("/evack")) > before)
        acked = decode(TopicKind.EVENTS_ACK, self.box.on("/evack")[-1]).seqs
        assert acked == sorted(e.seq for e in events)

    def telemetry(self, **fields: Any) -> None:
        """Publish a telemetry sample and wait until the device row holds it."""
        msg = Telemetry(uptime_s=10, load_1m=0.1, mem_used_pct=20, disk_free_mb=900,
                        disk_used_pct=10, agent_version="0.1.0", firmware_profile="sim",
                        **fields)  # fmt: skip
        self.client.publish(device_topic(self.uid, TopicKind.TELEMETRY), encode(msg), qos=1)
        assert wait(lambda: (self.row().telemetry or {}).get("power") == fields.get("power"))

    def row(self) -> Device:
        """The device row as stored now."""
        with session_scope(self.w.stack.app.state.session_factory) as db:
            device = db.get(Device, self.id)
            assert device is not None
            db.expunge(device)
            return device

    def states(self) -> list[dict[str, Any]]:
        """Desired states received (the retained one first)."""
        return [json.loads(p) for p in self.box.on("/state") if p]


def _get(w: World, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    return w.client.get(f"/api/v1{path}", params=params, headers=headers or w.headers)


def test_events_set_health_and_read_back(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="server.selftest.ingest")
    w = world
    dev = Cluster(w, w.org())
    reasons = ["Dải cao (2–8 kHz) giảm 19 dB so với mốc"]
    batch = [
        _test(1, NOW - 10 * D, "baseline", -30.0, baseline=True),
        _test(2, NOW - 5 * D, "ok", -30.5, level_vs_baseline_db=-0.5),
        _test(
            3,
            NOW - H,
            "high_loss",
            -31.2,
            level_vs_baseline_db=-1.2,
            reasons=reasons,
            command_id="5b1f0e7c2d9a4e31a6f0c3b2d8e7f145",
        ),
        _test(4, NOW - H / 2, "busy"),  # measured nothing: the failure stays the result
        DeviceEvent(seq=5, kind="power", at=(NOW - H / 3).timestamp(), code="battery"),
        DeviceEvent(
            seq=6,
            kind="silence",
            at=(NOW - H / 6).timestamp(),
            code="output_silent",
            item_id="12@1",
            silent_s=4.5,
        ),
    ]
    dev.send(*batch)
    dev.send(_test(7, NOW - 100 * D, "ok", -29.0))  # an old run arriving late changes nothing
    row = dev.row()
    assert (row.selftest_code, row.selftest_at, row.silence_at) == (
        "high_loss",
        NOW - H,
        NOW - H / 6,
    )
    assert health_flags(row, now=NOW, published_schedule=None)[:3] == [
        "offline", "output_silent", "selftest_failed"
    ]  # fmt: skip
    later = health_flags(row, now=NOW + 2 * D, published_schedule=None)
    assert "output_silent" not in later and "selftest_failed" in later
    power_lines = [r.getMessage() for r in caplog.records if "mains power" in r.getMessage()]
    assert power_lines == [
        f"device {dev.uid} ({dev.uid}) lost mains power at 06:40:00 03/03/2031 (Vietnam time):"
        " on backup battery"
    ]
    dev.send(*batch)  # resent (the ack was lost): stored and logged once
    assert len([r for r in caplog.records if "mains power" in r.getMessage()]) == 1

    dev.telemetry(power="battery", battery_volume_cap=40)
    assert "on_battery" in health_flags(dev.row(), now=NOW, published_schedule=None)
    dev.telemetry(power="battery_low", battery_volume_cap=40)
    flags = health_flags(dev.row(), now=NOW, published_schedule=None)
    assert "battery_low" in flags and "on_battery" not in flags
    listed = _get(w, "/devices").json()["items"]
    assert [(d["power"], d["selftest_code"]) for d in listed] == [("battery_low", "high_loss")]

    body = _get(w, f"/devices/{dev.id}/self-tests").json()
    assert [r["code"] for r in body["items"]] == ["busy", "high_loss", "ok", "baseline", "ok"]
    latest = body["latest"]
    assert latest == {
        "id": latest["id"], "at": "2031-03-02T23:00:00Z", "code": "high_loss",
        "verdict": "mất dải cao", "detail": "Kết quả: high_loss",
        "command_id": "5b1f0e7c2d9a4e31a6f0c3b2d8e7f145", "baseline": False,
        "level_vs_baseline_db": -1.2, "figures": _figures(-31.2).model_dump(), "reasons": reasons,
    }  # fmt: skip
    assert body["items"][0]["verdict"] == "loa đang phát, sẽ thử lại"
    assert body["baseline"]["code"] == "baseline" and body["baseline"]["baseline"] is True
    assert body["trend"] == [
        {"at": "2031-02-21T00:00:00Z", "level_db": -30.0, "level_vs_baseline_db": None,
         "code": "baseline"},
        {"at": "2031-02-26T00:00:00Z", "level_db": -30.5, "level_vs_baseline_db": -0.5,
         "code": "ok"},
        {"at": "2031-03-02T23:00:00Z", "level_db": -31.2, "level_vs_baseline_db": -1.2,
         "code": "high_loss"},
    ]  # fmt: skip
    two = _get(w, f"/devices/{dev.id}/self-tests", limit=2).json()["items"]
    assert [r["code"] for r in two] == [
        "busy", "high_loss"
    ]  # fmt: skip

    events = _get(w, f"/devices/{dev.id}/events").json()["items"]
    assert [e["code"] for e in events] == [
        "output_silent", "battery", "busy", "high_loss", "ok", "baseline", "ok"
    ]  # fmt: skip
    silence = _get(w, f"/devices/{dev.id}/events", kind="silence").json()["items"]
    assert silence == [{"id": silence[0]["id"], "kind": "silence", "code": "output_silent",
                        "at": "2031-03-02T23:50:00Z", "detail": "",
                        "data": {"item_id": "12@1", "silent_s": 4.5, "baseline": False,
                                 "reasons": []}}]  # fmt: skip
    power = _get(w, f"/devices/{dev.id}/events", kind="power", limit=1).json()["items"]
    assert [e["code"] for e in power] == ["battery"]


def test_a_self_test_is_sent_as_a_command(sqlite_world: World) -> None:
    w = sqlite_world
    org = w.org()
    dev_id, uid, password = w.device(org)
    box = Box()
    c = w.connect(uid, password, box, [device_topic(uid, TopicKind.COMMAND)])
    r = w.client.post(f"/api/v1/devices/{dev_id}/self-test", json={"volume": 40,
                      "rebaseline": True}, headers=w.headers)  # fmt: skip
    assert r.status_code == 202, r.text
    sent = r.json()
    assert sent == _get(w, f"/devices/{dev_id}/commands").json()[0]
    assert (sent["name"], sent["args"], sent["status"]) == (
        "self_test",
        {"volume": 40, "rebaseline": True},
        "sent",
    )
    assert wait(lambda: bool(box.on("/cmd")))
    command = decode(TopicKind.COMMAND, box.on("/cmd")[0])
    assert (command.id, command.name, command.args) == (
        sent["id"],
        "self_test",
        {"volume": 40, "rebaseline": True},
    )
    c.loop_stop()
    c.disconnect()
    # Offline, and without a body: queued like any command, at the scheduled volume.
    r = w.client.post(f"/api/v1/devices/{dev_id}/self-test", headers=w.headers)
    assert r.status_code == 202 and r.json()["args"] == {"rebaseline": False}, r.text
    for bad in ({"volume": 101}, {"volume": -1}, {"volume": 30, "seconds": 3}):
        r = w.client.post(f"/api/v1/devices/{dev_id}/self-test", json=bad, headers=w.headers)
        assert r.status_code == 422 and isinstance(r.json()["detail"], str), (bad, r.text)
    r = w.client.post("/api/v1/devices/999999/self-test", json={}, headers=w.headers)
    assert (r.status_code, r.json()["detail"]) == (404, "Device 999999 does not exist.")


def _user(w: World, org: int, role: str) -> dict[str, str]:
    name = f"{role}-{org}"
    body = {"username": name, "password": "mat-khau-thu-1", "role": role, "org_unit_id": org}
    w.post("/users", body, expect=201)
    r = w.client.post("/api/v1/auth/token", data={"username": name, "password": "mat-khau-thu-1"})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_reach_roles_and_bounds(world: World) -> None:
    w = world
    a, b = w.org("Xã An"), w.org("Xã Bình")
    dev_id, _uid, _pw = w.device(a)
    foreign_tech, viewer, operator = (
        _user(w, b, "technician"),
        _user(w, a, "viewer"),
        _user(w, a, "operator"),
    )
    tech = _user(w, a, "technician")
    post, patch = w.client.post, w.client.patch
    for path in (f"/devices/{dev_id}/self-tests", f"/devices/{dev_id}/events"):
        r = _get(w, path, foreign_tech)
        assert (r.status_code, r.json()["detail"]) == (404, f"Device {dev_id} does not exist.")
        assert _get(w, path, viewer).status_code == 200
        for limit in (0, 201, "x"):
            assert _get(w, path, limit=limit).status_code == 422, limit
        assert _get(w, path, limit=200).status_code == 200
    assert _get(w, f"/devices/{dev_id}/events", kind="plays").status_code == 422
    url = f"/api/v1/devices/{dev_id}/self-test"
    assert post(url, json={}, headers=foreign_tech).status_code == 404
    assert post(url, json={}, headers=viewer).status_code == 403
    assert post(url, json={}, headers=tech).status_code == 202
    unit = f"/api/v1/org-units/{a}/selftest"
    ok = {"daily_at": "11:30", "volume": 30}
    r = patch(unit, json=ok, headers=foreign_tech)
    assert (r.status_code, r.json()["detail"]) == (404, f"Org unit {a} does not exist.")
    assert patch(unit, json=ok, headers=operator).status_code == 403
    assert patch(unit, json=ok, headers=viewer).status_code == 403
    for at in ("23:00", "22:00", "04:59", "00:00"):
        r = patch(unit, json={"daily_at": at, "volume": 30}, headers=tech)
        assert r.status_code == 422 and "from 22:00 to 05:00" in r.json()["detail"], r.text
    for bad in ({"daily_at": "25:00"}, {"daily_at": "7:30"}, {"daily_at": "11:30", "volume": 101},
                {"volume": 30}, {"daily_at": "11:30", "extra": 1}):  # fmt: skip
        r = patch(unit, json=bad, headers=tech)
        assert r.status_code == 422 and isinstance(r.json()["detail"], str), (bad, r.text)
    assert "HH:MM" in patch(unit, json={"daily_at": "25:00"}, headers=tech).json()["detail"]
    for allowed in ("05:00", "21:59", None):
        r = patch(unit, json={"daily_at": allowed, "volume": 25}, headers=tech)
        assert r.status_code == 200 and r.json()["daily_at"] == allowed, r.text


def test_the_nearest_unit_s_time_reaches_the_desired_state(world: World) -> None:
    w = world
    province = w.org("Tỉnh Thử")
    c1, c2 = w.org("Xã Một", parent_id=province), w.org("Xã Hai", parent_id=province)
    village = w.org("Thôn Ba", parent_id=c1)
    other = w.org("Tỉnh Khác")
    d1, d2, d3, d4 = (w.device(u)[0] for u in (c1, village, c2, other))
    dev = Cluster(w, village)  # listens to its retained state
    assert wait(lambda: bool(dev.states()))
    assert dev.states()[-1]["selftest_daily_at"] is None
    version = dev.states()[-1]["version"]

    def patch(unit: int, at: str | None, volume: int = 30) -> list[int]:
        r = w.client.patch(f"/api/v1/org-units/{unit}/selftest",
                           json={"daily_at": at, "volume": volume}, headers=w.headers)  # fmt: skip
        assert r.status_code == 200, r.text
        assert (r.json()["daily_at"], r.json()["volume"]) == (at, volume)
        return list(r.json()["devices_updated"])

    def state_is(at: str | None, volume: int) -> bool:
        s = dev.states()[-1]
        return (s["selftest_daily_at"], s["selftest_volume"]) == (at, volume)

    assert patch(province, "11:30", 40) == sorted([d1, d2, d3, dev.id])
    assert wait(lambda: state_is("11:30", 40))
    assert dev.states()[-1]["version"] == version + 1
    assert patch(c1, "06:15", 25) == sorted([d1, d2, dev.id])
    assert wait(lambda: state_is("06:15", 25))
    assert patch(province, "12:00", 40) == [d3]  # the commune's own time wins below it
    assert patch(province, "12:00", 40) == []  # no change, no new state
    assert patch(c1, None, 50) == sorted([d1, d2, dev.id])  # back to the province's time
    assert wait(lambda: state_is("12:00", 40))
    assert dev.states()[-1]["version"] == version + 3
    versions = {d["id"]: d["state_version"] for d in _get(w, "/devices", limit=10).json()["items"]}
    assert versions[d4] == 1 and versions[d3] == 3


def test_the_summary_counts_clusters_whose_latest_self_test_failed(world: World) -> None:
    w = world
    province = w.org("Tỉnh Báo Cáo")
    c1, c2 = w.org("Xã Một", parent_id=province), w.org("Xã Hai", parent_id=province)
    failing, mended, before = Cluster(w, c1), Cluster(w, c1), Cluster(w, c2)
    failing.send(_test(1, NOW - 2 * H, "ok", -30.0), _test(2, NOW - H, "silent", -90.0),
                 _test(3, NOW - H / 2, "interrupted"))  # fmt: skip
    mended.send(_test(1, NOW - 2 * H, "distorted", -30.0), _test(2, NOW - H, "ok", -30.0))
    before.send(_test(1, NOW - 5 * D, "failed"))  # February: outside the March report
    r = _get(w, "/reports/summary", org_unit_id=province, period="2031-03")
    assert r.status_code == 200, r.text
    rows = {row["org_unit_id"]: row["selftest_failed"] for row in r.json()["rows"]}
    assert rows == {c1: 1, c2: 0}
    assert r.json()["total"]["selftest_failed"] == 1
    feb = _get(w, "/reports/summary", org_unit_id=province, period="2031-02").json()
    assert {row["org_unit_id"]: row["selftest_failed"] for row in feb["rows"]} == {c1: 0, c2: 1}
