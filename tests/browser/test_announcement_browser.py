"""The new-programme form's announcement mode: a positive drop shown, a negative level stored."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.browser.conftest import LiveServer, signed_in
from tests.browser.test_programme_relay_browser import _clip, _refused


def test_a_ducking_programme_from_the_form(chromium: Any, live_server: LiveServer) -> None:
    live = live_server
    n = live.next()
    clip = _clip(live, f"Thông báo lịch cắt điện {n}", 2.0)
    title = f"Thông báo chen ngang {n}"
    page = signed_in(chromium, live, "bientap")
    page.goto("/programmes/new")
    page.fill("input[name=title]", title)
    page.check(f"input[name=clip_ids][value='{clip}']")
    page.check("#programme-form >> text=Loa Xã An Bình")
    day = (datetime.now(UTC) + timedelta(days=3, hours=7)).date()
    page.fill("input[name=date]", date.fromisoformat(day.isoformat()).strftime("%d/%m/%Y"))
    page.fill("input[name=time]", "10:15")
    # Cutting needs no level: the level and ramps hide; ducking shows them again.
    page.check("#announce-editor >> text=Cắt ngang (tạm dừng chương trình đang phát)")
    assert page.is_hidden("#duck-fields")
    page.check("#announce-editor >> text=Hạ nhỏ tiếng chương trình đang phát")
    assert page.is_visible("#duck-fields")
    page.fill("input[name=duck_drop]", "70")
    _refused(page, "Mức giảm tiếng phải từ 3 đến 60 dB")
    page.fill("input[name=duck_drop]", "24")
    page.fill("input[name=duck_ramp_ms]", "450")
    page.click("#save-button")
    page.wait_for_url(re.compile(r".*/programmes/\d+$"))
    got = live.api("GET", f"/programmes/{page.url.rsplit('/', 1)[1]}", expect=200)
    assert (got["announcement_mode"], got["duck_db"], got["duck_ramp_ms"]) == ("duck", -24, 450)
    assert "giảm 24 dB" in page.inner_text("#announce-mode")
