"""Bulletins from above in a real browser: a commune operator opens, accepts or declines them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schedules import to_local_wall
from tests.browser.conftest import ADMIN_PASSWORD, LiveServer, shot, signed_in
from tests.server.test_permissions_fixtures import tone_wav


def _bulletin(live: LiveServer, title: str) -> int:
    """A normal bulletin the (global) admin sends from the province to commune A, approved."""
    if "bulletin_clip" not in live.ids:
        wav = tone_wav(1.5, 531.0)
        r = live.admin.post(
            "/api/v1/clips",
            files={"file": ("tin.wav", wav, "audio/wav")},
            data={"title": "Bản tin cấp trên"},
        )
        assert r.status_code in (200, 201), r.text
        live.ids["bulletin_clip"] = int(r.json()["id"])
    body = {
        "title": title,
        "clip_ids": [live.ids["bulletin_clip"]],
        "valid_until": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
        "target_org_unit_ids": [live.ids["a_commune"]],
    }
    bid = int(live.api("POST", "/bulletins", body, expect=201)["id"])
    live.api("POST", f"/bulletins/{bid}/approve", expect=200)
    return bid


def test_operator_opens_accepts_and_declines_bulletins(
    chromium: Any, live_server: LiveServer
) -> None:
    live = live_server
    n = live.next()
    accepted = _bulletin(live, f"Thông báo họp dân số {n}")
    declined = _bulletin(live, f"Thông báo thu phí số {n}")
    page = signed_in(chromium, live, "trucphat")
    notice = page.locator("#dash-bulletins a")
    assert "bản tin cấp trên mới chưa mở" in notice.inner_text()
    notice.click()
    page.wait_for_url(f"{live.base_url}/bulletins/inbox")
    assert page.inner_text("h1") == "Bản tin cấp trên"
    assert page.locator("nav.menu a[aria-current=page]").inner_text() == "Bản tin cấp trên"
    shot(page, "40-bulletins-inbox")

    page.click(f"a[href='/bulletins/inbox/{accepted}']")
    page.wait_for_url(f"**/bulletins/inbox/{accepted}")
    assert "Đã xem" in page.inner_text(".delivery")
    shot(page, "41-bulletin-received")
    form = page.locator(".accept-form")
    form.locator("input[name=when][value=at]").check()
    wall = to_local_wall(datetime.now(UTC)) + timedelta(days=3)
    form.locator("[name=day]").fill(f"{wall:%d/%m/%Y}")
    form.locator("[name=at]").fill("03:17")
    form.locator("button[type=submit]").click()
    page.wait_for_url(f"**/bulletins/inbox/{accepted}?done=accepted")
    assert "Đã nhận bản tin và xếp lịch phát" in page.inner_text("#bulletin-done")
    assert "03:17" in page.inner_text(".delivery")
    shot(page, "42-bulletin-accepted")

    page.goto(f"/bulletins/inbox/{declined}")
    reason = page.locator(".decline-form [name=reason]")
    assert reason.get_attribute("required") is not None  # the browser asks first
    reason.fill("Đã phát nội dung này tuần trước")
    page.locator(".decline-form button[type=submit]").click()
    page.wait_for_url(f"**/bulletins/inbox/{declined}?done=declined")
    text = page.inner_text(".delivery")
    assert "Từ chối phát" in text and "Đã phát nội dung này tuần trước" in text
    shot(page, "43-bulletin-declined")
    page.context.close()

    # The sender sees what each commune did.
    admin = signed_in(chromium, live, "admin", ADMIN_PASSWORD)
    admin.click("nav.menu a[href='/bulletins/sent']")
    admin.wait_for_url(f"{live.base_url}/bulletins/sent")
    card = admin.locator(f"#bulletin-{declined}")
    assert "Từ chối phát" in card.inner_text() and "Xã An Bình" in card.inner_text()
    shot(admin, "44-bulletins-sent")
    admin.goto("/bulletins/new")
    shot(admin, "45-bulletin-new")
    admin.context.close()
