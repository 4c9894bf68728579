"""The self-test section in Chromium: the trend drawn on a phone, and run-now after a confirm."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from protocol import EventBatch
from server.db import session_scope, utcnow
from server.devices.models import Device, DeviceCommand
from server.plays.service import store_events
from tests.browser.conftest import LiveServer, shot, signed_in
from tests.server.test_selftest_console import history


def test_the_trend_is_drawn_and_run_now_asks_first(chromium: Any, live_server: LiveServer) -> None:
    # A device of its own: its alarms must not show up in the other browser tests' lists.
    n = live_server.next()
    body = {"uid": f"a-selftest-{n}", "name": f"Cụm loa tự kiểm tra {n}",
            "org_unit_id": live_server.ids["a_village"], "firmware_profile": "sim"}  # fmt: skip
    device_id = live_server.api("POST", "/devices", body, expect=201)["device"]["id"]
    with session_scope(live_server.app.state.session_factory) as db:
        device = db.get(Device, device_id)
        assert device is not None
        batch = EventBatch.model_validate({"ts": utcnow().timestamp(), "events": history(utcnow())})
        store_events(db, device=device, batch=batch, now=utcnow())
        device.telemetry = {"power": "battery_low", "battery_volume_cap": 40}
        device.telemetry_at = utcnow() - timedelta(seconds=5)
    page = signed_in(chromium, live_server, "kythuat")
    asked: list[str] = []
    page.on("dialog", lambda dialog: asked.append(dialog.message))  # signed_in accepts it
    page.goto(f"/devices/{device_id}")
    assert page.inner_text("#selftest-verdict") == "Mất dải cao"
    box = page.locator("#selftest-trend").bounding_box()
    assert box is not None and 300 <= box["width"] <= 390  # fits the phone's width
    assert page.locator("#selftest-trend circle.mark-fail").count() == 2
    assert "Ắc quy yếu" in page.inner_text("#power-state")
    page.locator("#selftest").scroll_into_view_if_needed()
    shot(page, "selftest-device")
    page.check("input[name=rebaseline]")
    page.click("#selftest-form button[type=submit]")
    page.wait_for_selector("#selftest-sent")
    assert asked and "quét tần số" in asked[0]
    with session_scope(live_server.app.state.session_factory) as db:
        rows = db.scalars(select(DeviceCommand).where(DeviceCommand.device_id == device_id))
        assert [(r.name, r.args) for r in rows] == [("self_test", {"rebaseline": True})]
    page.context.close()
