"""The console's bulletin screens over HTTP: a commune's inbox and answers, the sender's view.

Real SQLite, a real broker, signed-in console sessions; the province sends through the API.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from schedules import local_tz, to_local_wall
from server.audit.models import AuditEntry
from server.bulletins.models import Bulletin, BulletinDelivery
from server.programmes.models import Programme
from tests.server.test_console import csrf_of, sign_in
from tests.server.test_console_reports import Clock
from tests.server.test_permissions_fixtures import PASSWORD, Org, PermWorld, running_perm_world
from tests.server.vietnamese_text import english_words, vietnamese_vocabulary, visible_text


@dataclass
class World:
    """The permission world with a province editor and approver and a commune-B operator."""

    w: PermWorld
    a: Org
    b: Org
    tokens: dict[str, str]
    clip: int

    def call(self, who: str, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        """Call /api/v1 as a named user."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        r = self.w.client.request(method, f"/api/v1{path}", json=body, headers=headers)
        assert r.status_code == expect, f"{who} {method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def bulletin(self, title: str, *, level: str = "normal", units: list[int] | None = None) -> int:
        """A bulletin the province editor sends and its approver approves."""
        body = {
            "title": title,
            "level": level,
            "clip_ids": [self.clip],
            "valid_until": (datetime.now(UTC) + timedelta(days=10)).isoformat(),
            "target_org_unit_ids": units or [self.a.commune],
        }
        bid = int(self.call("p-editor", "POST", "/bulletins", body, expect=201)["id"])
        self.call("p-approver", "POST", f"/bulletins/{bid}/approve")
        return bid

    def delivery(self, bulletin_id: int, unit: int) -> BulletinDelivery:
        """The delivery row as stored now."""
        with self.w.stack.session() as db:  # type: ignore[no-untyped-call]
            row: BulletinDelivery | None = db.scalar(
                select(BulletinDelivery).where(
                    BulletinDelivery.bulletin_id == bulletin_id,
                    BulletinDelivery.org_unit_id == unit,
                )
            )
            assert row is not None
            db.expunge(row)
            return row

    def count(self, model: Any) -> int:
        """Rows of a table."""
        with self.w.stack.session() as db:  # type: ignore[no-untyped-call]
            return int(db.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with running_perm_world("sqlite", tmp_path) as w:
        assert w.a is not None and w.b is not None
        tokens: dict[str, str] = {}
        for name, org, role in (
            ("p-editor", w.province, "editor"),
            ("p-approver", w.province, "approver"),
            ("b-operator", w.b.commune, "operator"),
        ):
            body = {
                "username": name, "password": PASSWORD, "role": role, "org_unit_id": org,
                "can_emergency": role == "approver",
            }  # fmt: skip
            w.admin("POST", "/users", body, expect=201)
            tokens[name] = w.sign_in(name)
        yield World(w=w, a=w.a, b=w.b, tokens=tokens, clip=w.db_clip(w.province))


def _post(client: TestClient, path: str, data: dict[str, Any], page: str) -> Any:
    return client.post(path, data={"csrf": csrf_of(client, page), **data}, follow_redirects=False)


def _tomorrow_local(hour: int, minute: int) -> tuple[str, str, datetime]:
    """Tomorrow at hh:mm in Vietnam: the form's date and time and the UTC instant."""
    wall = to_local_wall(datetime.now(UTC)) + timedelta(days=1)
    wall = wall.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return f"{wall:%d/%m/%Y}", f"{wall:%H:%M}", wall.replace(tzinfo=local_tz()).astimezone(UTC)


def test_inbox_lists_new_bulletins_and_the_dashboard_counts_them(world: World) -> None:
    first = world.bulletin("Thông báo lịch tiêm chủng")
    second = world.bulletin("Cảnh báo mưa lớn", level="priority")  # placed at once: not new
    third = world.bulletin("Thông báo họp tổ dân phố")
    client = sign_in(world.w, "operator-a")
    home = client.get("/").text
    assert "2 bản tin cấp trên mới chưa mở" in home and 'href="/bulletins/inbox"' in home
    assert '<a href="/bulletins/inbox"' in home  # the menu entry
    inbox = client.get("/bulletins/inbox")
    assert inbox.status_code == 200
    rows = re.findall(r'<tr class="inbox-item level-(\w+)( is-new)?">(.*?)</tr>', inbox.text, re.S)
    assert [(level, bool(new)) for level, new, _ in rows] == [
        ("normal", True), ("priority", False), ("normal", True),
    ]  # newest first  # fmt: skip
    assert f"/bulletins/inbox/{third}" in rows[0][2]
    assert f"/bulletins/inbox/{second}" in rows[1][2] and "Ưu tiên" in rows[1][2]
    assert "Đã xếp lịch" in rows[1][2]
    assert f"/bulletins/inbox/{first}" in rows[2][2] and "Thông thường" in rows[2][2]
    assert "Tỉnh Thử" in rows[2][2] and "Mới, chưa mở" in rows[2][2]
    # Opening one marks it seen (the service's mark_seen): the count goes down.
    detail = client.get(f"/bulletins/inbox/{first}")
    assert detail.status_code == 200 and "Thông báo lịch tiêm chủng" in detail.text
    assert world.delivery(first, world.a.commune).status == "seen"
    assert "Đã xem" in detail.text
    assert "1 bản tin cấp trên mới chưa mở" in client.get("/").text
    # A viewer may read bulletins but does not receive them: no link, no page.
    viewer = sign_in(world.w, "viewer-a")
    assert "/bulletins/inbox" not in viewer.get("/").text
    assert viewer.get("/bulletins/inbox").status_code == 403
    # The province sent them: they are not "from above" for its own users.
    approver = sign_in(world.w, "p-approver")
    assert "bản tin cấp trên mới" not in approver.get("/").text
    assert f"/bulletins/inbox/{first}" not in approver.get("/bulletins/inbox").text
    assert approver.get(f"/bulletins/inbox/{first}").status_code == 404


def test_a_communes_own_bulletin_to_its_villages_waits_in_its_inbox(world: World) -> None:
    body = {
        "title": "Loa thôn: lịch dọn vệ sinh",
        "clip_ids": [world.a.clip],
        "valid_until": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
        "target_org_unit_ids": [world.a.village],
    }
    headers = world.w.headers("approver")
    r = world.w.client.post("/api/v1/bulletins", json=body, headers=headers)
    assert r.status_code == 201, r.text
    bid = r.json()["id"]
    r = world.w.client.post(f"/api/v1/bulletins/{bid}/approve", headers=headers)
    assert r.status_code == 200, r.text
    client = sign_in(world.w, "approver-a")
    assert f"/bulletins/inbox/{bid}" in client.get("/bulletins/inbox").text
    assert "Nhận bản tin" in client.get(f"/bulletins/inbox/{bid}").text
    assert world.delivery(bid, world.a.commune).status == "seen"


def test_accept_at_a_time_makes_the_commune_programme(world: World) -> None:
    bid = world.bulletin("Thông báo họp dân")
    client = sign_in(world.w, "operator-a")
    page = f"/bulletins/inbox/{bid}"
    assert "Nhận bản tin" in client.get(page).text
    day, at, start = _tomorrow_local(8, 15)
    data = {"when": "at", "day": day, "at": at, "zone_ids": [str(world.a.zone)]}
    r = _post(client, f"{page}/accept", data, page)
    assert r.status_code == 303 and r.headers["location"] == f"{page}?done=accepted"
    delivery = world.delivery(bid, world.a.commune)
    assert delivery.status == "scheduled" and delivery.programme_id is not None
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        programme = db.get(Programme, delivery.programme_id)
        assert programme is not None
        assert programme.org_unit_id == world.a.commune and programme.bulletin_id == bid
        assert programme.status == "approved" and programme.start == start
        assert [z.id for z in programme.zones] == [world.a.zone]
    shown = client.get(f"{page}?done=accepted").text
    assert "Đã nhận bản tin và xếp lịch phát" in shown and "Đã xếp lịch" in shown
    assert f"{at}" in shown and f"/programmes/{delivery.programme_id}" in shown
    assert "Nhận bản tin</button>" not in shown  # nothing more to decide


def test_accept_in_the_next_regular_slot(world: World) -> None:
    slots = {"slots": [{"start_time": "05:00", "weekdays": "1234567"}]}
    world.w.admin("PUT", f"/org-units/{world.a.commune}/slots", slots, expect=200)
    bid = world.bulletin("Tin nông nghiệp")
    client = sign_in(world.w, "approver-a")
    page = f"/bulletins/inbox/{bid}"
    r = _post(client, f"{page}/accept", {"when": "slot", "zone_ids": [str(world.a.zone)]}, page)
    assert r.status_code == 303
    delivery = world.delivery(bid, world.a.commune)
    assert delivery.status == "scheduled" and delivery.first_start is not None
    assert to_local_wall(delivery.first_start).strftime("%H:%M") == "05:00"


def test_bad_accept_input_is_refused_in_vietnamese_and_changes_nothing(world: World) -> None:
    bid = world.bulletin("Tin văn hoá")
    client = sign_in(world.w, "operator-a")
    page = f"/bulletins/inbox/{bid}"
    data = {"when": "at", "day": "31/02/2031", "at": "25:00", "zone_ids": [str(world.a.zone)]}
    r = _post(client, f"{page}/accept", data, page)
    assert r.status_code == 422 and "Hãy ghi ngày theo dạng ngày/tháng/năm" in r.text
    # No regular slot: the service refuses; its sentence is kept as detail, nothing is made.
    programmes = world.count(Programme)
    r = _post(client, f"{page}/accept", {"when": "slot", "zone_ids": [str(world.a.zone)]}, page)
    assert r.status_code == 422 and "Chưa xếp lịch được bản tin" in r.text
    assert "no regular slot" in r.text
    assert world.count(Programme) == programmes
    assert world.delivery(bid, world.a.commune).status == "seen"
    r = _post(client, f"{page}/accept", {"when": "slot"}, page)
    assert r.status_code == 422 and "Hãy chọn ít nhất một vùng phát" in r.text


def test_decline_needs_a_reason(world: World) -> None:
    bid = world.bulletin("Thông báo thu phí")
    client = sign_in(world.w, "operator-a")
    page = f"/bulletins/inbox/{bid}"
    client.get(page)
    before = world.delivery(bid, world.a.commune)
    audits = world.count(AuditEntry)
    r = _post(client, f"{page}/decline", {"reason": "   "}, page)
    assert r.status_code == 422
    assert "Hãy ghi lý do không phát bản tin. Chưa có gì thay đổi." in r.text
    after = world.delivery(bid, world.a.commune)
    assert (after.status, after.status_at, after.decline_reason) == (
        before.status, before.status_at, "",
    )  # fmt: skip
    assert world.count(AuditEntry) == audits
    r = _post(client, f"{page}/decline", {"reason": "Trùng nội dung đã phát"}, page)
    assert r.status_code == 303
    declined = world.delivery(bid, world.a.commune)
    assert declined.status == "declined" and declined.decline_reason == "Trùng nội dung đã phát"
    shown = client.get(page).text
    assert "Từ chối phát" in shown and "Trùng nội dung đã phát" in shown
    # The sender sees it per commune.
    sent = sign_in(world.w, "p-editor").get("/bulletins/sent").text
    card = sent[sent.index(f'id="bulletin-{bid}"') :]
    card = card[: card.index("</section>")]
    assert "Xã An Bình" in card and "Từ chối phát" in card and "Trùng nội dung đã phát" in card


def test_another_commune_can_neither_see_nor_act(world: World) -> None:
    bid = world.bulletin("Tin riêng xã An Bình")
    other = sign_in(world.w, "b-operator")
    assert f"/bulletins/inbox/{bid}" not in other.get("/bulletins/inbox").text
    page = f"/bulletins/inbox/{bid}"
    assert other.get(page).status_code == 404
    day, at, _ = _tomorrow_local(9, 0)
    data = {"when": "at", "day": day, "at": at, "zone_ids": [str(world.b.zone)]}
    assert _post(other, f"{page}/accept", data, "/").status_code == 404
    assert _post(other, f"{page}/decline", {"reason": "không"}, "/").status_code == 404
    delivery = world.delivery(bid, world.a.commune)
    assert delivery.status == "delivered" and delivery.programme_id is None
    # And a form without the session's token is refused before anything happens.
    own = sign_in(world.w, "operator-a")
    r = own.post(f"{page}/decline", data={"reason": "x", "csrf": "sai"}, follow_redirects=False)
    assert r.status_code == 403 and world.delivery(bid, world.a.commune).status == "delivered"


def test_priority_bulletins_show_their_slot_and_can_be_reordered(world: World) -> None:
    slots = {"slots": [{"start_time": "05:00", "weekdays": "1234567"}]}
    world.w.admin("PUT", f"/org-units/{world.a.commune}/slots", slots, expect=200)
    first = world.bulletin("Tin ưu tiên thứ nhất", level="priority")
    second = world.bulletin("Tin ưu tiên thứ hai", level="priority")
    # Each new priority bulletin goes to the head of the slot.
    assert world.delivery(second, world.a.commune).slot_position == 0
    assert world.delivery(first, world.a.commune).slot_position == 1
    client = sign_in(world.w, "operator-a")
    page = f"/bulletins/inbox/{first}"
    html = client.get(page).text
    assert "Vị trí 2 trong 2 bản tin ưu tiên" in html and "Khung giờ phát lúc" in html
    assert "Từ chối phát</button>" not in html  # priority: never declined
    moved = world.delivery(first, world.a.commune)
    r = _post(client, f"/bulletins/inbox/deliveries/{moved.id}/position", {"position": 0}, page)
    assert r.status_code == 303 and r.headers["location"] == f"{page}?done=moved"
    assert world.delivery(first, world.a.commune).slot_position == 0
    assert world.delivery(second, world.a.commune).slot_position == 1
    assert "Vị trí 1 trong 2" in client.get(page).text


def test_sent_screen_shows_each_commune_and_flags_overdue_priority(world: World) -> None:
    normal = world.bulletin("Thông báo chung", units=[world.a.commune, world.b.commune])
    urgent = world.bulletin("Tin ưu tiên quá hạn", level="priority")  # no slot: placed now
    client = sign_in(world.w, "operator-a")
    day, at, _ = _tomorrow_local(10, 30)
    page = f"/bulletins/inbox/{normal}"
    data = {"when": "at", "day": day, "at": at, "zone_ids": [str(world.a.zone)]}
    assert _post(client, f"{page}/accept", data, page).status_code == 303
    sender = sign_in(world.w, "p-editor")
    assert '<a href="/bulletins/sent"' in sender.get("/").text
    html = sender.get("/bulletins/sent").text
    card = html[html.index(f'id="bulletin-{normal}"') :]
    card = card[: card.index("</section>")]
    rows = dict(re.findall(r'data-unit="(\d+)">(.*?)</tr>', card, re.S))
    assert "Đã xếp lịch" in rows[str(world.a.commune)] and at in rows[str(world.a.commune)]
    assert "Mới, chưa mở" in rows[str(world.b.commune)]
    assert "0/1 cụm loa" in rows[str(world.a.commune)]
    assert "Quá hạn" not in card
    # Ten minutes after its start, the unplayed priority delivery is flagged.
    world.w.stack.app.state.clock = Clock(datetime.now(UTC) + timedelta(minutes=30))
    html = sender.get("/bulletins/sent").text
    card = html[html.index(f'id="bulletin-{urgent}"') :]
    card = card[: card.index("</section>")]
    assert "1 đơn vị quá hạn chưa phát" in card and "Quá hạn chưa phát" in card
    assert sign_in(world.w, "viewer-a").get("/bulletins/sent").status_code == 403


def test_send_form_and_emergency_confirmation(world: World) -> None:
    client = sign_in(world.w, "p-approver")
    form = client.get("/bulletins/new").text
    assert "Xã An Bình" in form and "Khẩn cấp" in form
    until_day = f"{to_local_wall(datetime.now(UTC)) + timedelta(days=3):%d/%m/%Y}"
    data: dict[str, Any] = {
        "title": "Bão số 3 đổ bộ",
        "level": "emergency",
        "clip_ids": [str(world.clip)],
        "targets": [str(world.a.commune)],
        "until_day": until_day,
        "until_at": "18:00",
    }
    before = world.count(Bulletin)
    r = _post(client, "/bulletins/new", data, "/bulletins/new")
    assert r.status_code == 200 and "Xác nhận gửi bản tin khẩn cấp" in r.text
    assert world.count(Bulletin) == before  # nothing sent before the confirmation
    r = _post(client, "/bulletins/new", {**data, "confirmed": "yes"}, "/bulletins/new")
    assert r.status_code == 303 and r.headers["location"] == "/bulletins/sent?done=sent"
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        sent = db.scalar(select(Bulletin).where(Bulletin.title == "Bão số 3 đổ bộ"))
        assert sent is not None and sent.level == "emergency" and sent.status == "approved"
        sent_id = sent.id
    assert world.delivery(sent_id, world.a.commune).status == "scheduled"
    # A normal one without targets is refused in Vietnamese; nothing is sent.
    r = _post(
        client, "/bulletins/new", {**data, "level": "normal", "targets": []}, "/bulletins/new"
    )
    assert r.status_code == 422 and "Hãy chọn ít nhất một đơn vị nhận" in r.text
    assert world.count(Bulletin) == before + 1
    editor = sign_in(world.w, "p-editor")
    assert "Khẩn cấp</option>" not in editor.get("/bulletins/new").text  # no emergency right


def test_bulletin_pages_are_in_vietnamese(world: World) -> None:
    bid = world.bulletin("Thông báo lịch tiêm chủng", level="priority")
    vocabulary = vietnamese_vocabulary(
        ("Tỉnh Thử", "Xã An Bình", "Xã Bình Minh", "testclient", "operator-a", "p-editor")
    )
    found: dict[str, list[str]] = {}
    for who, path in (
        ("operator-a", "/bulletins/inbox"),
        ("operator-a", f"/bulletins/inbox/{bid}"),
        ("p-editor", "/bulletins/sent"),
        ("p-editor", "/bulletins/new"),
        ("operator-a", "/"),
    ):
        html = sign_in(world.w, who).get(path).text
        words = english_words(visible_text(html), vocabulary=vocabulary)
        if words:
            found[path] = sorted(set(words))
    assert not found, found
