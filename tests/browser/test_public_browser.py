"""The commune's public page on a phone: readable with JavaScript off, the audio decodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.browser.conftest import PHONE, LiveServer, shot
from tests.server.test_permissions_fixtures import tone_wav

CODE = "BROWSER-PUB-B"


def _public_bulletin(live: LiveServer, title: str, level: str, text: str) -> int:
    """A public bulletin from the province to commune B (A's inbox stays as other tests expect)."""
    wav = tone_wav(2.0, 440.0 + live.next())
    r = live.admin.post(
        "/api/v1/clips",
        files={"file": ("cong-khai.wav", wav, "audio/wav")},
        data={"title": f"Âm thanh {title}"},
    )
    assert r.status_code in (200, 201), r.text
    body = {
        "title": title,
        "level": level,
        "text": text,
        "public": True,
        "clip_ids": [int(r.json()["id"])],
        "valid_until": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
        "target_org_unit_ids": [live.ids["b_commune"]],
    }
    sent = live.api("POST", "/bulletins", body, expect=201)
    if sent["status"] == "submitted":
        live.api("POST", f"/bulletins/{sent['id']}/approve", expect=200)
    return int(sent["id"])


def _phone(chromium: Any, live: LiveServer, *, javascript: bool) -> Any:
    context = chromium.new_context(
        viewport=PHONE, base_url=live.base_url, locale="vi-VN",
        timezone_id="Asia/Ho_Chi_Minh", java_script_enabled=javascript,
    )  # fmt: skip
    context.set_default_timeout(20_000)
    return context.new_page()


def test_public_page_on_a_phone_without_and_with_javascript(
    chromium: Any, live_server: LiveServer
) -> None:
    live = live_server
    live.api("PATCH", f"/org-units/{live.ids['b_commune']}", {"code": CODE}, expect=200)
    n = live.next()
    normal = _public_bulletin(live, f"Lịch thu gom rác số {n}", "normal", "Sáng thứ Hai hằng tuần.")
    _public_bulletin(live, f"Bão đổ bộ số {n}", "emergency", "Người dân ở yên trong nhà.")

    page = _phone(chromium, live, javascript=False)
    page.goto(f"/p/{CODE}")
    assert page.inner_text("h1") == "Bản tin Xã Bình Minh"
    urgent = page.inner_text(".pub-emergency")
    assert f"Bão đổ bộ số {n}" in urgent and "Người dân ở yên trong nhà." in urgent
    listed = page.inner_text(".pub-list")
    assert f"Lịch thu gom rác số {n}" in listed and "Thông thường" in listed
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    link = page.locator("footer a[href$='/phan-anh']")
    assert link.inner_text() == "Gửi phản ánh, kiến nghị"
    shot(page, "issue16-public-page-phone")
    page.context.close()

    page = _phone(chromium, live, javascript=True)
    page.goto(f"/p/{CODE}")
    duration = page.evaluate(
        """(id) => new Promise(resolve => {
        const a = document.querySelector('#tin-' + id + ' audio');
        a.addEventListener('loadedmetadata', () => resolve(a.duration));
        a.addEventListener('error', () => resolve(-1)); a.load(); })""",
        normal,
    )
    assert 1.5 < duration < 2.5, duration  # the browser decoded the bulletin's Ogg/Opus
    page.context.close()
