"""First-hour flows (issue 11): listen before approving, the week view's zone, a command to
an offline cluster, the 403 page, one word per priority, the favicon."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from schedules import to_local_wall
from tests.server.test_console import sign_in
from tests.server.test_permissions_fixtures import PermWorld, running_perm_world

TTS_TEXT = "Mời bà con ra đình họp lúc bảy giờ tối."


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PermWorld]:
    with running_perm_world("sqlite", tmp_path_factory.mktemp("flows")) as w:
        yield w


def _programme(w: PermWorld, clip_ids: list[int], zone: int, *, headers: dict[str, str]) -> int:
    assert w.a is not None
    body = {
        "title": f"Thông báo {w.next()}",
        "clip_ids": clip_ids,
        "zone_ids": [zone],
        "start": (datetime.now(UTC) + timedelta(days=3, hours=w.next())).isoformat(),
        "org_unit_id": w.a.commune,
    }
    r = w.client.post("/api/v1/programmes", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_approvers_hear_every_clip_and_read_the_tts_text(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    editor = w.headers("editor")
    r = w.client.post(
        "/api/v1/clips/tts", json={"text": TTS_TEXT, "title": "Mời họp"}, headers=editor
    )
    assert r.status_code == 201, r.text
    tts = int(r.json()["id"])
    pid = _programme(w, [w.a.clip, tts], w.a.zone, headers=editor)
    assert w.client.post(f"/api/v1/programmes/{pid}/submit", headers=editor).status_code == 200
    html = sign_in(w, "approver-a").get("/approvals").text
    card = html[html.index(f'id="approval-{pid}"') :]
    card = card[: card.index("</section>")]
    sources = re.findall(r'<audio controls preload="none" src="([^"]+)"', card)
    assert sources == [f"/api/v1/clips/{w.a.clip}/audio", f"/api/v1/clips/{tts}/audio"]
    assert TTS_TEXT in card
    approver = sign_in(w, "approver-a")
    assert approver.get(sources[1]).headers["content-type"] == "audio/ogg"  # it plays


def test_the_week_view_opens_on_the_zone_the_user_scheduled(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    editor = sign_in(w, "editor-a")
    # A zone whose name sorts first, and one the editor schedules on.
    first = w.admin(
        "POST", "/zones", {"org_unit_id": w.a.village, "name": "AAA đầu danh sách"}, expect=201
    )["id"]
    mine = w.zone(w.a.village, [])
    _programme(w, [w.a.clip], mine, headers=w.headers("editor"))
    week = editor.get("/programmes").text
    selected = re.search(r'<option value="(\d+)" selected>', week)
    assert selected is not None and int(selected.group(1)) == mine != first


def test_a_command_to_an_offline_cluster_says_so_and_when_it_expires(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    technician = w.headers("technician")
    r = w.client.post(
        f"/api/v1/devices/{w.a.device}/commands", json={"name": "test_tone"}, headers=technician
    )
    assert r.status_code in (200, 201, 202), r.text
    expires = to_local_wall(datetime.fromisoformat(r.json()["expires_at"]))
    html = sign_in(w, "technician-a").get(f"/devices/{w.a.device}").text
    table = html[html.index('id="command-table"') :]
    assert "Đang chờ trả lời" in table
    assert "Cụm loa đang mất kết nối" in table and f"hết hạn lúc {expires:%H:%M}" in table
    assert 'data-online="no"' in html  # the script says the same for commands it adds


def test_the_403_page_keeps_the_menu_and_sign_out(world: PermWorld) -> None:
    operator = sign_in(world, "operator-a")
    r = operator.get("/approvals")
    assert r.status_code == 403 and "Bạn không có quyền xem trang này" in r.text
    assert 'href="/devices"' in r.text and "Đăng xuất" in r.text


def test_one_word_for_each_priority_and_a_favicon(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    _programme(w, [w.a.clip], w.a.zone, headers=w.headers("editor"))
    operator = sign_in(w, "operator-a")
    listed, live = operator.get("/programmes").text, operator.get("/live").text
    assert "Bình thường" in listed and "Bình thường" in live
    assert not re.search(r">\s*Thường\s*<", listed + live)
    icon = operator.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_operators_get_the_form_that_fits_what_they_may_do(world: PermWorld) -> None:
    operator = sign_in(world, "operator-a").get("/programmes/new").text
    assert 'name="date"' not in operator and 'id="check-button"' not in operator
    assert 'id="emergency-button"' in operator and "Phát khẩn cấp" in operator
    editor = sign_in(world, "editor-a").get("/programmes/new").text
    assert 'name="date"' in editor and 'id="check-button"' in editor
