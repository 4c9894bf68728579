"""Every console page, as every demo role, at desktop and phone size: in Vietnamese, no
sideways scrolling (issue 11: the raw RRULE widened a 390 px phone page to 732 px)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.clips.models import Clip
from server.db import session_scope
from tests.browser.conftest import ADMIN_PASSWORD, PHONE, SCREENSHOTS, LiveServer, signed_in
from tests.browser.test_console_browser import tone_wav
from tests.server.test_permissions_fixtures import PASSWORD
from tests.server.vietnamese_text import RUN, english_words, vietnamese_vocabulary

DESKTOP = {"width": 1366, "height": 900}
VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
MON_SAT = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5,17;BYMINUTE=0;BYSECOND=0"
USERS = [("admin", ADMIN_PASSWORD), ("bientap", PASSWORD), ("duyet", PASSWORD),
         ("trucphat", PASSWORD), ("kythuat", PASSWORD)]  # fmt: skip
# Screenshots a reader of the change looks at (under test-output/screenshots/issue11-*).
SHOWN = {"/": "dashboard", "/programmes": "programmes", "/approvals": "approvals"}


def _clip(live: LiveServer) -> int:
    """A clip row of commune A (its bytes are never decoded by these page loads)."""
    with session_scope(live.app.state.session_factory) as db:
        clip = Clip(
            sha256="ab" * 32, original_sha256="ab" * 32, title="Bản tin sáng", duration_s=60.0,
            original_duration_s=60.0, original_sample_rate=48000, original_channels=1,
            original_size_bytes=1000, size_bytes=1000, peaks=[],
            org_unit_id=live.ids["a_commune"],
        )  # fmt: skip
        db.add(clip)
        db.flush()
        return int(clip.id)


@pytest.fixture(scope="module")
def pages(live_server: LiveServer) -> list[str]:
    """The pages to open, with a weekly programme waiting for approval and one approved."""
    live = live_server
    clip = _clip(live)
    body = {"title": "Bản tin sáng và chiều", "clip_ids": [clip], "zone_ids": [live.ids["a_zone"]],
            "rrule": MON_SAT, "dtstart": "2031-03-03T00:00:00",
            "org_unit_id": live.ids["a_commune"]}  # fmt: skip
    approved = live.api("POST", "/programmes", body, expect=201)["id"]
    live.api("POST", f"/programmes/{approved}/submit", expect=200)
    live.api("POST", f"/programmes/{approved}/approve", expect=200)
    waiting = live.api("POST", "/programmes", {**body, "title": "Thông báo chờ duyệt"}, expect=201)
    live.api("POST", f"/programmes/{waiting['id']}/submit", expect=200)
    device, zone = live.ids["a_device"], live.ids["a_zone"]
    return [
        "/", "/devices", f"/devices/{device}", "/clips", f"/clips/{clip}", "/programmes",
        f"/programmes?zone_id={zone}", "/programmes/new", f"/programmes/{approved}",
        "/approvals", "/reports", f"/reports?zone_id={zone}", "/live", "/users", "/audit",
    ]  # fmt: skip


def _data_words(live: LiveServer) -> set[str]:
    """Words of what people typed (titles, names, file names): not console strings."""
    texts: list[str] = []
    for path, keys in (
        ("/clips?limit=200", ("title", "original_filename")),
        ("/programmes?limit=200", ("title",)),
        ("/users?limit=200", ("username", "full_name")),
        ("/devices?limit=1000", ("name", "uid", "location")),
        ("/zones", ("name",)),
        ("/org-units", ("name",)),
        ("/live", ("label",)),
    ):
        found = live.api("GET", path, expect=200)
        items = found["items"] if isinstance(found, dict) else found
        texts += [str(item.get(k) or "") for item in items for k in keys]
    return {w.lower() for text in texts for w in RUN.findall(text)}


@pytest.mark.parametrize("size", ["desktop", "phone"])
@pytest.mark.parametrize(("username", "password"), USERS, ids=[u for u, _ in USERS])
def test_pages_fit_the_screen_and_read_in_vietnamese(
    chromium: Any, live_server: LiveServer, pages: list[str], username: str, password: str,
    size: str,
) -> None:  # fmt: skip
    viewport = DESKTOP if size == "desktop" else PHONE
    page = signed_in(chromium, live_server, username, password)
    page.set_viewport_size(viewport)
    words = vietnamese_vocabulary() | _data_words(live_server)
    wide: dict[str, int] = {}
    english: dict[str, list[str]] = {}
    for path in pages:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > viewport["width"]:
            wide[path] = width
        # What a reader sees once the scripts ran (the live sessions, command results ...).
        shown = page.evaluate("""() => {
            const out = [document.body.innerText];
            for (const el of document.querySelectorAll('[title],[placeholder],[aria-label]'))
                out.push(el.title || '', el.placeholder || '', el.getAttribute('aria-label') || '');
            return out.join('\\n'); }""")
        # <code> holds what a device or ffmpeg said, for technicians: not console strings.
        for code in page.query_selector_all("code"):
            shown = shown.replace(code.inner_text(), " ")
        found = english_words(shown, vocabulary=words)
        if found:
            english[path] = sorted(set(found))
        label = SHOWN.get(path) or ("device" if path.startswith("/devices/") else None)
        if username == "duyet" and label is not None and "?" not in path:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot = SCREENSHOTS / f"issue11-{label}-{size}.png"
            page.screenshot(path=str(shot), full_page=True)
    page.context.close()
    assert not wide, f"pages wider than {viewport['width']} px: {wide}"
    assert not english, english


def test_dates_and_times_read_vietnamese_in_an_english_browser(
    chromium: Any, live_server: LiveServer
) -> None:
    context = chromium.new_context(
        viewport=DESKTOP, base_url=live_server.base_url, locale="en-US",
        timezone_id="America/New_York",
    )  # fmt: skip
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto("/")
    page.fill("input[name=username]", "bientap")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.base_url}/")
    page.goto("/programmes/new")
    day = page.input_value("input[name=date]")
    clock = page.input_value("input[name=time]")
    assert re.fullmatch(r"\d{2}/\d{2}/\d{4}", day) and re.fullmatch(r"[0-2]\d:[0-5]\d", clock)
    assert page.get_attribute("input[name=date]", "type") == "text"  # not the browser's widget
    start = datetime.strptime(f"{day} {clock}", "%d/%m/%Y %H:%M").replace(tzinfo=VIETNAM)
    assert start > datetime.now(VIETNAM)  # the default is never in the past
    page.goto("/reports")
    page.fill("input[name=start]", "01/12/2026")
    page.fill("input[name=end]", "03/12/2026")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    assert page.input_value("input[name=start]") == "01/12/2026"
    assert page.input_value("input[name=end]") == "03/12/2026"
    context.close()


def test_an_operator_gets_the_emergency_form_without_dates(
    chromium: Any, live_server: LiveServer
) -> None:
    r = live_server.admin.post(
        "/api/v1/clips",
        files={"file": ("khan-cap.wav", tone_wav(2.0, 587.0), "audio/wav")},
        data={"title": "Báo động lũ"},
    )
    assert r.status_code in (200, 201), r.text
    page = signed_in(chromium, live_server, "trucphat")
    page.goto("/programmes/new")
    for field in ("input[name=date]", "input[name=time]", "input[name=from]", "#check-button"):
        assert page.query_selector(field) is None, field
    assert page.is_visible("#emergency-button")
    page.fill("input[name=title]", "Khẩn cấp: nước lên")
    page.check("text=Báo động lũ")
    page.check("#programme-form >> text=Loa Xã An Bình")
    page.click("#emergency-button")  # the confirmation is accepted by signed_in()
    page.wait_for_url(re.compile(r".*/programmes/\d+$"))
    assert page.is_visible(".badge.prio-emergency")
    assert page.is_visible(".badge.st-approved") or page.is_visible(".badge.st-active")
    page.context.close()


def test_a_phone_lists_twelve_clusters_compactly(chromium: Any, live_server: LiveServer) -> None:
    live = live_server
    listed = live.api("GET", "/devices?limit=1000", expect=200)["items"]
    mine = [d for d in listed if d["org_unit_id"] == live.ids["a_village"]]
    for _ in range(max(0, 12 - len(mine))):
        n = live.next()
        body = {"uid": f"a-them-{n:03d}", "name": f"Cụm loa thêm {n:03d}",
                "org_unit_id": live.ids["a_village"], "firmware_profile": "sim"}  # fmt: skip
        live.api("POST", "/devices", body, expect=201)
    page = signed_in(chromium, live, "trucphat")  # 390 × 844
    page.goto("/devices")
    rows = page.query_selector_all("table.devices tbody tr")
    assert len(rows) >= 12
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 2400, height  # was 5,600 px for 12 clusters
    assert page.is_visible("input[name=q]") and page.is_visible("select[name=status]")
    page.context.close()


def test_the_weekly_editor_writes_monday_to_saturday_at_two_times(
    chromium: Any, live_server: LiveServer
) -> None:
    r = live_server.admin.post(
        "/api/v1/clips",
        files={"file": ("hang-tuan.wav", tone_wav(2.0, 659.0), "audio/wav")},
        data={"title": "Tin hằng tuần"},
    )
    assert r.status_code in (200, 201), r.text
    page = signed_in(chromium, live_server, "bientap")
    page.goto("/programmes/new")
    page.fill("input[name=title]", "Bản tin hằng tuần")
    page.check("#programme-form >> text=Tin hằng tuần")
    page.check("#programme-form >> text=Loa Xã An Bình")
    page.check("input[name=mode][value=repeat]")
    assert page.input_value("select[name=recurrence_preset]") == "custom"
    assert page.is_visible("#week-editor")
    days = page.eval_on_selector_all(
        "input[name=weekday]:checked", "boxes => boxes.map(b => b.value)"
    )
    assert days == ["MO", "TU", "WE", "TH", "FR", "SA"]
    page.fill("input[name=times]", "17:00, 05:00")
    # An approved programme at the same times on the same zone: the check names it in words.
    today = datetime.now(VIETNAM).date().isoformat()
    body = {
        "title": "Phát thanh sáng đã duyệt",
        "clip_ids": [r.json()["id"]],
        "zone_ids": [live_server.ids["a_zone"]],
        "org_unit_id": live_server.ids["a_commune"],
        "rrule": "FREQ=DAILY;BYHOUR=5;BYMINUTE=0;BYSECOND=0",
        "dtstart": f"{today}T00:00:00",
    }
    other = live_server.api("POST", "/programmes", body, expect=201)["id"]
    live_server.api("POST", f"/programmes/{other}/submit", expect=200)
    live_server.api("POST", f"/programmes/{other}/approve", expect=200)
    page.click("#check-button")
    page.wait_for_selector("#conflicts li")
    said = page.inner_text("#conflicts")
    assert "“Phát thanh sáng đã duyệt” — trùng lần đầu lúc" in said, said
    words = vietnamese_vocabulary(("Phát thanh sáng đã duyệt",))
    assert not english_words(said, vocabulary=words), said
    page.click("#save-button")
    page.wait_for_url(re.compile(r".*/programmes/\d+$"))
    assert "Thứ Hai–Thứ Bảy, 05:00 và 17:00" in page.inner_text("main")
    page.context.close()
