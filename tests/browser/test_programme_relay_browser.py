"""A programme with a relay between two clips, built from the console's new-programme form."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.browser.conftest import LiveServer, shot, signed_in
from tests.browser.test_console_browser import tone_wav


def _clip(live: LiveServer, title: str, seconds: float) -> int:
    # Clips are content-addressed: a tone another test uploaded would come back under its
    # title, so each clip here gets a pitch of its own.
    pitch = 300.0 + 7 * live.next()
    r = live.admin.post("/api/v1/clips", files={"file": ("tin.wav", tone_wav(seconds, pitch),
                        "audio/wav")}, data={"title": title})  # fmt: skip
    assert r.status_code in (200, 201), r.text
    assert r.json()["title"] == title, "a clip with the same audio already existed"
    return int(r.json()["id"])


def _source(live: LiveServer, name: str, org_unit_id: int) -> int:
    # A LAN address, deliberately allowed: the URL guard refuses private hosts otherwise.
    body = {"name": name, "url": f"http://127.0.0.1:9/{live.next()}", "kind": "national",
            "org_unit_id": org_unit_id, "allow_private": True}  # fmt: skip
    return int(live.api("POST", "/relay-sources", body, expect=201)["id"])


def _refused(page: Any, words: str) -> None:
    page.click("#save-button")
    page.wait_for_selector("#flash.error")
    assert words in page.inner_text("#flash"), page.inner_text("#flash")
    page.evaluate("document.getElementById('flash').className = ''")  # the next one shows anew


def test_a_relay_between_two_clips_from_the_form(chromium: Any, live_server: LiveServer) -> None:
    live = live_server
    n = live.next()
    opening = _clip(live, f"Nhạc hiệu buổi sáng {n}", 2.0)
    closing = _clip(live, f"Bản tin xã cuối giờ {n}", 3.0)
    vov = _source(live, f"VOV1 {n}", live.ids["a_commune"])
    spare = _source(live, f"Đài tỉnh {n}", live.ids["a_commune"])
    foreign = _source(live, f"Đài xã Bình Minh {n}", live.ids["b_commune"])
    village = _source(live, f"Loa thôn Đông {n}", live.ids["a_village"])
    title = f"Tiếp âm thời sự sáng {n}"

    page = signed_in(chromium, live, "bientap")
    page.goto("/programmes/new")
    page.fill("input[name=title]", title)
    page.check(f"input[name=clip_ids][value='{opening}']")
    page.check(f"input[name=clip_ids][value='{closing}']")
    # Removing a clip from the list unticks it; ticking it again puts it back at the end.
    page.locator("#item-list > li[data-kind=clip]").nth(1).locator("button[data-remove]").click()
    assert not page.is_checked(f"input[name=clip_ids][value='{closing}']")
    page.check(f"input[name=clip_ids][value='{closing}']")
    page.click("#add-relay")
    relay = page.locator("#item-list li.relay-item")
    assert relay.count() == 1
    sources = relay.locator("select[name=relay_source_id]")
    assert sources.locator(f"option[value='{vov}']").count() == 1
    assert sources.locator(f"option[value='{foreign}']").count() == 0  # another commune's
    # A village's source is for the village's programmes, not the commune's.
    assert sources.locator(f"option[value='{village}']").is_disabled()
    page.select_option("select[name=org_unit_id]", str(live.ids["a_village"]))
    assert sources.locator(f"option[value='{village}']").is_enabled()
    page.select_option("select[name=org_unit_id]", str(live.ids["a_commune"]))
    assert sources.locator(f"option[value='{village}']").is_disabled()
    assert "Phát khi mất tín hiệu tiếp âm" in relay.inner_text()
    sources.select_option(str(vov))
    relay.locator("select[name=fallback_clip_id]").select_option(str(opening))
    # Ticked clips come first, the relay last: move it up between them.
    relay.locator("button[data-move='-1']").click()
    rows = page.locator("#item-list > li")
    assert rows.count() == 3
    assert f"Nhạc hiệu buổi sáng {n}" in rows.nth(0).inner_text()
    assert rows.nth(1).get_attribute("data-kind") == "relay"
    assert f"Bản tin xã cuối giờ {n}" in rows.nth(2).inner_text()
    # 2 s + 30 min (the default) + 3 s.
    assert page.inner_text("#items-total-value") == "30:05"
    page.check("#programme-form >> text=Loa Xã An Bình")
    tomorrow = (datetime.now(UTC) + timedelta(days=1, hours=7)).date()
    page.fill("input[name=date]", date.fromisoformat(tomorrow.isoformat()).strftime("%d/%m/%Y"))
    page.fill("input[name=time]", "05:30")

    # The browser refuses a relay of 0 or 500 minutes, saying why; nothing is saved.
    minutes = relay.locator("input[name=relay_minutes]")
    for bad in ("0", "500"):
        minutes.fill(bad)
        _refused(page, "Thời lượng tiếp âm phải là số phút nguyên, từ 1 đến 240 phút.")
    assert not [p for p in live.api("GET", "/programmes?limit=500")["items"] if p["title"] == title]
    minutes.fill("45")
    assert page.inner_text("#items-total-value") == "45:05"

    # A second relay, removed again; then the API's own refusal shows next to the form.
    page.click("#add-relay")
    assert page.locator("#item-list li.relay-item").count() == 2
    extra = page.locator("#item-list li.relay-item").nth(1)
    extra.locator("select[name=relay_source_id]").select_option(str(spare))
    live.api("PATCH", f"/relay-sources/{spare}", {"enabled": False}, expect=200)
    _refused(page, f"Unknown relay source id(s): {spare}.")
    extra.locator("button[data-remove]").click()
    assert page.locator("#item-list > li").count() == 3

    minutes.fill("30")
    page.click("#save-button")
    page.wait_for_url(re.compile(r".*/programmes/\d+$"))
    programme_id = int(page.url.rsplit("/", 1)[1])
    got = live.api("GET", f"/programmes/{programme_id}", expect=200)
    assert got["title"] == title
    assert [i["kind"] for i in got["items"]] == ["clip", "relay", "clip"]
    assert got["items"][0]["clip"]["id"] == opening
    assert got["items"][2]["clip"]["id"] == closing
    r = got["items"][1]["relay"]
    assert (r["relay_source_id"], r["duration_s"], r["fallback_clip_id"]) == (vov, 1800, opening)
    assert page.is_visible(f"text=VOV1 {n}")
    shot(page, "programme-relay-saved")
