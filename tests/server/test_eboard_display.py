"""E-boards from the server's side: programmes carry a display text, the planner sends it to
devices with a screen (and only to them), the API and the console show what a board shows.

A real server, broker and planner on a fake clock (SQLite, and PostgreSQL when configured).
Tree: province › commune "Xã An Bình" › village "Thôn Đông" holding an e-board, a horn-only
cluster and a device with a retired profile name; commune "Xã Bình Minh" has its own e-board.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loa_testkit.stack import ADMIN_PASSWORD, database
from protocol import TopicKind, device_topic
from schedules import DISPLAY_TEXT_MAX, ScheduleDocument
from server.bulletins.models import APPROVED, Bulletin, BulletinClip, BulletinDelivery
from server.bulletins.placement import place
from server.devices.models import Device
from server.planner.compile import latest_schedule
from server.programmes.models import Programme
from server.programmes.validation import display_text_of
from tests.server.conftest import BACKENDS
from tests.server.test_planner import ScheduleInbox
from tests.server.test_programmes_fixtures import NOW, World, daily, one_off, running_world, wait
from tests.stack import skip_without_mosquitto

PASSWORD = "mat-khau-thu-1"
SCRIPT = "<script>alert('bảng tin')</script>"


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """A running server with its broker and a fake clock, on every database backend."""
    skip_without_mosquitto()
    with database(request.param, tmp_path) as url, running_world(url, tmp_path / "data") as w:
        yield w


class Tree:
    """The communes, the village, the devices and a zone over the village's devices."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.province = w.org("Tỉnh Thử")
        self.a = w.org("Xã An Bình", parent_id=self.province)
        w.first_org = self.a
        body = {"name": "Thôn Đông", "kind": "village", "parent_id": self.a}
        self.village = int(w.post("/org-units", body, expect=201)["id"])
        self.b = w.org("Xã Bình Minh", parent_id=self.province)
        self.board, self.board_uid, self.board_password = self.device("bang-tin-01", "eboard-sim")
        self.horn, self.horn_uid, _ = self.device("cum-loa-01", "sim")
        self.retired, _, _ = self.device("bang-cu-01", "sim")
        with w.stack.session() as db:  # type: ignore[no-untyped-call]
            # A profile the server no longer ships: no screen, and no crash in the planner.
            retired = db.get(Device, self.retired)
            assert retired is not None
            retired.firmware_profile = "eboard-2019-discontinued"
        self.zone = w.zone(self.village, device_ids=[self.board, self.horn, self.retired])
        self.foreign, _, _ = self.device("bang-tin-xa-b", "eboard-sim", org=self.b)
        w.zone(self.b, device_ids=[self.foreign])
        self.clip = w.clip(duration_s=60, title="Bản tin sáng")

    def device(self, uid: str, profile: str, org: int | None = None) -> tuple[int, str, str]:
        """Register a device in the village (or org); (id, uid, MQTT password)."""
        body = {"uid": uid, "name": f"Cụm {uid}", "org_unit_id": org or self.village,
                "firmware_profile": profile}  # fmt: skip
        answer = self.w.post("/devices", body, expect=201)
        return int(answer["device"]["id"]), uid, str(answer["credentials"]["password"])

    def document(self, device_id: int) -> tuple[int, dict[str, Any]]:
        """The newest schedule the planner published to a device: (version, JSON)."""
        with self.w.stack.session() as db:  # type: ignore[no-untyped-call]
            row = latest_schedule(db, device_id=device_id)
            assert row is not None
            return row.version, dict(row.document)

    def user(self, name: str, role: str, org: int) -> dict[str, str]:
        """A user of org, signed in over the API."""
        body = {"username": name, "password": PASSWORD, "role": role, "org_unit_id": org}
        self.w.post("/users", body, expect=201)
        r = self.w.client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _console(w: World, username: str = "admin", password: str = ADMIN_PASSWORD) -> TestClient:
    """A browser signed in through the console's form (the session cookie is Secure)."""
    client = TestClient(w.stack.app, base_url="https://testserver")
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    form = {"username": username, "password": password, "csrf": token.group(1), "next": "/"}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303
    return client


def _patch(w: World, programme_id: int, body: Any) -> Any:
    return w.client.patch(f"/api/v1/programmes/{programme_id}", json=body, headers=w.headers)


# -- programmes --------------------------------------------------------------------------------


def test_a_programme_keeps_its_display_text_bounded_and_escaped(world: World) -> None:
    w = world
    t = Tree(w)
    text = f"{SCRIPT}\nLịch tiêm phòng cho trẻ em lúc 8 giờ."
    p = w.programme(**one_off([t.clip.id], [t.zone], at=NOW + timedelta(hours=3)),
                    display_text=text)  # fmt: skip
    assert p["display_text"] == text
    assert w.get(f"/programmes/{p['id']}")["display_text"] == text
    assert w.get("/programmes")["items"][0]["display_text"] == text
    # Too long, or not text: refused with a sentence naming the field; nothing stored.
    too_long = w.programme(
        expect=422, **one_off([t.clip.id], [t.zone], at=NOW + timedelta(hours=5)),
        display_text="a" * (DISPLAY_TEXT_MAX + 1),
    )  # fmt: skip
    assert "display_text" in too_long["detail"] and "2000" in too_long["detail"]
    for bad in (123, ["x"], {"a": 1}):
        r = _patch(w, p["id"], {"display_text": bad})
        assert r.status_code == 422 and "display_text" in r.json()["detail"], r.text
    assert _patch(w, p["id"], {"display_text": "x" * 2001}).status_code == 422
    assert w.get(f"/programmes/{p['id']}")["display_text"] == text
    # An edit changes it; null leaves it; "" clears it.
    assert _patch(w, p["id"], {"display_text": "Đổi giờ: 9 giờ."}).json()["display_text"] == (
        "Đổi giờ: 9 giờ."
    )
    assert _patch(w, p["id"], {"display_text": None}).json()["display_text"] == "Đổi giờ: 9 giờ."
    assert _patch(w, p["id"], {"title": "Tiêm phòng"}).json()["display_text"] == "Đổi giờ: 9 giờ."
    assert _patch(w, p["id"], {"display_text": ""}).json()["display_text"] == ""
    _patch(w, p["id"], {"display_text": text})
    # The console shows it as text: the script is escaped, never markup.
    browser = _console(w)
    html = browser.get(f"/programmes/{p['id']}").text
    assert "Nội dung hiển thị trên bảng tin điện tử" in html
    assert "&lt;script&gt;alert(" in html and SCRIPT not in html
    form = browser.get("/programmes/new").text
    assert 'name="display_text"' in form and "Nội dung hiển thị trên bảng tin điện tử" in form


def test_the_tts_text_is_the_default_display_text(world: World) -> None:
    w = world
    t = Tree(w)
    spoken = "Mời bà con ra đình họp lúc bảy giờ tối."
    body = one_off([], [t.zone], at=NOW + timedelta(hours=4))
    del body["clip_ids"]
    p = w.programme(**body, items=[{"kind": "clip", "clip_id": t.clip.id},
                                   {"kind": "tts", "text": f"  {spoken} "}])  # fmt: skip
    assert p["display_text"] == spoken
    body["start"] = (NOW + timedelta(hours=6)).isoformat()
    own = w.programme(**body, items=[{"kind": "tts", "text": spoken}],
                      display_text="Họp tại đình lúc 19:00")  # fmt: skip
    assert own["display_text"] == "Họp tại đình lúc 19:00"
    # The default is cut to what a board shows, marked as cut.
    cut = display_text_of("chữ " * 700)
    assert len(cut) == DISPLAY_TEXT_MAX and cut.endswith("…")
    assert display_text_of("  ", fallback="Tiêu đề") == "Tiêu đề"


def test_placed_bulletins_carry_their_text_to_the_boards(world: World) -> None:
    w = world
    t = Tree(w)
    texts = {"Mưa lớn": "Mưa lớn từ chiều nay.\nBà con chú ý.", "Chỉ có âm thanh": "",
             "Rất dài": "Cảnh báo " * 400}  # fmt: skip
    placed: dict[str, int] = {}
    with w.stack.session() as db:  # type: ignore[no-untyped-call]
        for title, text in texts.items():
            bulletin = Bulletin(
                title=title, level="emergency", status=APPROVED, text=text,
                valid_from=NOW, valid_until=NOW + timedelta(hours=2), org_unit_id=t.province,
                approved_at=NOW,
            )  # fmt: skip
            bulletin.clips = [BulletinClip(position=0, clip_id=t.clip.id)]
            db.add(bulletin)
            db.flush()
            delivery = BulletinDelivery(bulletin_id=bulletin.id, org_unit_id=t.a)
            db.add(delivery)
            db.flush()
            place(db, bulletin=bulletin, deliveries=[delivery], now=NOW)
            assert delivery.programme_id is not None
            placed[title] = delivery.programme_id
    with w.stack.session() as db:  # type: ignore[no-untyped-call]
        shown = {title: db.get(Programme, pid).display_text for title, pid in placed.items()}
    assert shown["Mưa lớn"] == texts["Mưa lớn"]
    assert shown["Chỉ có âm thanh"] == "Chỉ có âm thanh"  # the title when there is no text
    assert len(shown["Rất dài"]) == DISPLAY_TEXT_MAX and shown["Rất dài"].endswith("…")
    assert w.planner.run_once() is not None
    _version, doc = t.document(t.board)
    board_texts = {x["programme_id"]: x["text"] for x in doc["display"]["texts"]}
    assert board_texts[placed["Mưa lớn"]] == texts["Mưa lớn"]
    assert "display" not in t.document(t.horn)[1]


# -- the planner -------------------------------------------------------------------------------


def test_the_planner_sends_the_display_to_eboards_only(world: World) -> None:
    w = world
    t = Tree(w)
    inbox = ScheduleInbox()
    w.connect(t.board_uid, t.board_password, inbox, [device_topic(t.board_uid, TopicKind.SCHEDULE)])
    text = "Tiêm phòng cho trẻ em tại trạm y tế xã."
    p = w.approved(**daily([t.clip.id], [t.zone], hour=8, title="Tiêm phòng"), display_text=text)
    # Over MQTT, the e-board's retained document carries the unit and the text.
    assert wait(lambda: inbox.has_items() and inbox.latest.display is not None)
    received: ScheduleDocument = inbox.latest
    assert received.display is not None
    assert received.display.unit_name == "Xã An Bình"  # the commune above the village
    assert [(x.programme_id, x.title, x.text) for x in received.display.texts] == [
        (p["id"], "Tiêm phòng", text)
    ]
    board_version, board_doc = t.document(t.board)
    horn_version, horn_doc = t.document(t.horn)
    retired_version, retired_doc = t.document(t.retired)
    assert board_doc["display"]["unit_name"] == "Xã An Bình"
    assert "display" not in horn_doc and "display" not in retired_doc
    assert len(horn_doc["items"]) == len(board_doc["items"]) == 7
    # Nothing changed: nobody is republished.
    result = w.planner.run_once()
    assert result is not None and result.documents == []
    # Only the text changed: the e-board gets a new version, horn-only devices do not.
    with w.stack.session() as db:  # type: ignore[no-untyped-call]
        programme = db.get(Programme, p["id"])
        assert programme is not None
        programme.display_text = "Đổi địa điểm: nhà văn hoá thôn."
    result = w.planner.run_once()
    assert result is not None
    assert [d.device_id for d in result.documents] == [t.board_uid]
    assert t.document(t.board)[0] == board_version + 1
    assert t.document(t.horn)[0] == horn_version
    assert t.document(t.retired)[0] == retired_version
    assert wait(lambda: inbox.version() == board_version + 1)
    assert inbox.latest.display.texts[0].text == "Đổi địa điểm: nhà văn hoá thôn."
    # A renamed title reaches the board too.
    with w.stack.session() as db:  # type: ignore[no-untyped-call]
        programme = db.get(Programme, p["id"])
        assert programme is not None
        programme.title = "Tiêm phòng (đổi địa điểm)"
    result = w.planner.run_once()
    assert result is not None and [d.device_id for d in result.documents] == [t.board_uid]
    # A device moved to a screen profile is replanned with a display of its own.
    r = w.client.patch(f"/api/v1/devices/{t.horn}", json={"firmware_profile": "eboard-rpi4-hdmi"},
                       headers=w.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    assert w.planner.wait_idle(30)
    assert wait(lambda: "display" in t.document(t.horn)[1])
    assert t.document(t.horn)[1]["display"]["unit_name"] == "Xã An Bình"


# -- what a board shows: API and console --------------------------------------------------------


def test_the_display_endpoint_shows_now_next_today_and_emergencies(world: World) -> None:
    w = world
    t = Tree(w)
    nothing = w.get(f"/devices/{t.board}/display")
    assert nothing["has_display"] is True and nothing["unit_name"] == "Xã An Bình"
    assert (nothing["showing"], nothing["next"], nothing["today"]) == (None, None, [])
    morning = w.approved(**one_off([t.clip.id], [t.zone], at=NOW + timedelta(hours=1),
                                   title="Thông báo sáng"),
                         display_text=f"{SCRIPT} họp")  # fmt: skip
    later = w.approved(**one_off([t.clip.id], [t.zone], at=NOW + timedelta(hours=5),
                                 title="Thông báo chiều"))  # fmt: skip
    tomorrow = w.approved(**one_off([t.clip.id], [t.zone], at=NOW + timedelta(days=1, hours=1),
                                    title="Ngày mai"))  # fmt: skip
    board = w.get(f"/devices/{t.board}/display")
    assert board["unit_name"] == "Xã An Bình" and board["showing"] is None
    assert board["next"]["programme_id"] == morning["id"]
    assert board["next"]["text"] == f"{SCRIPT} họp" and board["next"]["title"] == "Thông báo sáng"
    # Today is the local day (07:00–24:00 here): not tomorrow's item.
    assert [i["programme_id"] for i in board["today"]] == [morning["id"], later["id"]]
    assert tomorrow["id"] not in [i["programme_id"] for i in board["today"]]
    assert board["reported_schedule_version"] is None and board["in_sync"] is False
    w.clock.advance(timedelta(hours=1, seconds=30))
    board = w.get(f"/devices/{t.board}/display")
    assert board["showing"]["programme_id"] == morning["id"]
    assert board["next"]["programme_id"] == later["id"] and board["emergency"] == []
    emergency = w.programme(
        **one_off([t.clip.id], [t.zone], at=w.clock.now + timedelta(minutes=30), title="Lũ"),
        priority="emergency", approve_now=True, display_text="Lũ về: sơ tán ngay.",
    )  # fmt: skip
    assert w.planner.wait_idle(30)
    w.clock.advance(timedelta(minutes=30, seconds=10))
    board = w.get(f"/devices/{t.board}/display")
    assert board["showing"]["programme_id"] == emergency["id"]
    assert [e["text"] for e in board["emergency"]] == ["Lũ về: sơ tán ngay."]
    # A horn-only device has no screen: nothing to show, said plainly.
    horn = w.get(f"/devices/{t.horn}/display")
    assert horn["has_display"] is False and horn["today"] == [] and horn["showing"] is None


def test_the_display_endpoint_is_reach_checked_and_refuses_garbage(world: World) -> None:
    w = world
    t = Tree(w)
    viewer = t.user("xem-a", "viewer", t.a)
    own = w.client.get(f"/api/v1/devices/{t.board}/display", headers=viewer)
    assert own.status_code == 200 and own.json()["has_display"] is True
    foreign = w.client.get(f"/api/v1/devices/{t.foreign}/display", headers=viewer)
    missing = w.client.get("/api/v1/devices/987654/display", headers=viewer)
    assert foreign.status_code == missing.status_code == 404
    # The same answer as a missing device, except for the id it names.
    assert foreign.json()["detail"].replace(str(t.foreign), "N") == missing.json()[
        "detail"
    ].replace("987654", "N")
    for garbage in ("abc", "-1", "0", "1.5", "99999999999999999999999", "%00", "1%20OR%201=1"):
        r = w.client.get(f"/api/v1/devices/{garbage}/display", headers=viewer)
        assert r.status_code in (404, 422), (garbage, r.status_code, r.text)
        assert r.json().get("detail"), garbage
    assert w.client.get(f"/api/v1/devices/{t.board}/display").status_code == 401


def test_the_console_shows_what_each_eboard_displays(world: World) -> None:
    w = world
    t = Tree(w)
    w.approved(**one_off([t.clip.id], [t.zone], at=NOW + timedelta(hours=2), title="Tin chiều"),
               display_text=f"{SCRIPT}\nDòng thứ hai")  # fmt: skip
    browser = _console(w)
    html = browser.get(f"/devices/{t.board}").text
    section = html[html.index('id="eboard"') :]
    section = section[: section.index("</section>")]
    assert "Bảng tin điện tử" in section and "Xã An Bình" in section
    assert "Tin chiều" in section and "Dòng thứ hai" in section
    assert "&lt;script&gt;" in section and SCRIPT not in html
    assert 'id="eboard"' not in browser.get(f"/devices/{t.horn}").text
    listing = browser.get("/devices").text
    row = listing[listing.index(f'href="/devices/{t.board}"') :]
    assert "Bảng tin" in row[: row.index("</td>")]
    horn_row = listing[listing.index(f'href="/devices/{t.horn}"') :]
    assert "Bảng tin" not in horn_row[: horn_row.index("</td>")]
