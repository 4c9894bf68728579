"""A device that met a forged broker certificate is flagged, and its page says what to do."""

from __future__ import annotations

from datetime import UTC, datetime

from protocol import TopicKind, device_topic, encode
from server.devices.health import health_flags
from server.devices.models import Device
from tests.server.test_console import sign_in
from tests.server.test_console_devices import connect_device, telemetry, wait, world
from tests.server.test_permissions_fixtures import PermWorld

__all__ = ["world"]  # the fixture: communes A and B with a broker


def test_refused_certificates_come_first_among_the_warnings() -> None:
    now = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    device = Device(
        uid="x", name="x", org_unit_id=1, firmware_profile="sim", mqtt_password_hash="",
        online=False, telemetry_at=now,
        telemetry={"tls_refusals": 3, "tls_refused": "host:8883: not signed by the CA"},
    )  # fmt: skip
    assert health_flags(device, now=now, published_schedule=None) == [
        "tls_intercepted",
        "offline",
    ]
    device.telemetry = {"tls_refusals": None}
    assert health_flags(device, now=now, published_schedule=None) == ["offline"]


def test_the_device_page_alerts_in_vietnamese_with_the_last_refusal(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    device_id, uid, client, _ = connect_device(w, w.a.village)
    sample = telemetry().model_copy(
        update={
            "tls_refusals": 2,
            "tls_refused": "2026-12-03T08:00:00Z loa.example.vn:8883: sai CA",
        }
    )
    client.publish(device_topic(uid, TopicKind.TELEMETRY), encode(sample), qos=1).wait_for_publish(
        5
    )
    tech = w.headers("technician")

    def stored() -> bool:
        seen = w.client.get(f"/api/v1/devices/{device_id}", headers=tech).json()["telemetry"]
        return bool(seen and seen.get("tls_refusals") == 2)

    assert wait(stored)
    browser = sign_in(w, "technician-a")
    page = browser.get(f"/devices/{device_id}").text
    assert 'id="tls-alert"' in page and "Gặp chứng chỉ lạ trên đường truyền" in page
    assert "đã từ chối 2 lần" in page and "loa.example.vn:8883: sai CA" in page
    listing = browser.get("/devices").text
    assert "Gặp chứng chỉ lạ trên đường truyền" in listing
    client.loop_stop()
    client.disconnect()
