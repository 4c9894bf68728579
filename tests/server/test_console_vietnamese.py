"""Every console page, as every demo role, in Vietnamese: no English word on the screen."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from loa_testkit.stack import ADMIN_PASSWORD, Stack, database, server_stack
from server.audit.models import AuditEntry
from server.devices.models import Device
from server.orgs.models import Zone
from server.plays.models import PlayRecord
from server.seed import DEMO_USERS, seed_demo, seed_demo_users
from tests.server.test_permissions_fixtures import tone_wav
from tests.server.vietnamese_text import english_words, vietnamese_vocabulary, visible_text

PASSWORD = "mat-khau-thu-1"
PAGES = (
    "/", "/devices", "/devices/{device}", "/clips", "/clips/{clip}", "/programmes",
    "/programmes?zone_id={zone}", "/programmes/new", "/programmes/{programme}",
    "/programmes/{draft}", "/approvals", "/reports", "/reports?zone_id={zone}", "/live",
    "/users", "/audit", "/devices?status=alarm",
)  # fmt: skip


@dataclass
class Demo:
    """The demo world with some history: ids the pages are opened on."""

    stack: Stack
    ids: dict[str, int]


def _sign_in(stack: Stack, username: str, password: str) -> TestClient:
    client = TestClient(stack.app, base_url="https://testserver")
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    r = client.post(
        "/login",
        data={"username": username, "password": password, "csrf": token.group(1), "next": "/"},
    )
    assert r.status_code == 200, r.text[:300]
    return client


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("vi")
    with database("sqlite", tmp) as url, server_stack(url, tmp / "data") as stack:
        with stack.session() as db:
            seed_demo(db)
            seed_demo_users(db, password=PASSWORD)
        yield Demo(stack, _history(stack))


def _history(stack: Stack) -> dict[str, int]:
    """A clip, an approved weekly programme that played, a draft, a command, sign-ins."""
    h = stack.headers
    c = stack.client
    editor = {"Authorization": "Bearer " + c.post(
        "/api/v1/auth/token", data={"username": "bientap", "password": PASSWORD}
    ).json()["access_token"]}  # fmt: skip
    r = c.post(
        "/api/v1/clips",
        headers=editor,
        files={"file": ("thong-bao.wav", tone_wav(2.0), "audio/wav")},
        data={"title": "Thông báo tiêm phòng"},
    )
    assert r.status_code == 201, r.text
    clip = int(r.json()["id"])
    with stack.session() as db:
        zone = db.scalar(select(Zone).where(Zone.name == "Cụm loa Thôn Hải Thành"))
        assert zone is not None
        zone_id, commune = zone.id, zone.org_unit_id
        # Both demo communes have a zone named "Toàn xã"; this is Bảo Ninh's.
        whole_commune = db.scalar(
            select(Zone.id).where(Zone.name == "Toàn xã").order_by(Zone.id).limit(1)
        )
        device = db.scalar(select(Device).where(Device.uid == "bao-ninh-01"))
        assert device is not None
        device_id = device.id
    commune = c.get(f"/api/v1/org-units/{commune}", headers=h).json()["parent_id"]
    body = {
        "title": "Bản tin sáng",
        "clip_ids": [clip],
        "zone_ids": [zone_id],
        "rrule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5,17;BYMINUTE=0;BYSECOND=0",
        "dtstart": (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00"),
        "org_unit_id": commune,
    }
    r = c.post("/api/v1/programmes", json=body, headers=editor)
    assert r.status_code == 201, r.text
    programme = int(r.json()["id"])
    assert c.post(f"/api/v1/programmes/{programme}/submit", headers=editor).status_code == 200
    assert c.post(f"/api/v1/programmes/{programme}/approve", headers=h).status_code == 200
    whole = {"title": "Nháp thông báo", "zone_ids": [whole_commune]}
    r = c.post("/api/v1/programmes", json={**body, **whole}, headers=editor)
    assert r.status_code == 201, r.text
    draft = int(r.json()["id"])
    r = c.post(f"/api/v1/devices/{device_id}/commands", json={"name": "test_tone"}, headers=h)
    assert r.status_code in (200, 201, 202), r.text
    r = c.post(
        "/api/v1/users",
        json={
            "username": "nguoimoi",
            "password": PASSWORD,
            "role": "viewer",
            "org_unit_id": commune,
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    now = datetime.now(UTC).replace(microsecond=0)
    with stack.session() as db:
        db.add_all(
            [
                # What live.routes writes when a session starts (no live audio in this stack).
                AuditEntry(action="live.start", object_type="live", object_id="1ad973bb601a",
                           username="trucphat", org_unit_id=commune,
                           summary="emergency live (file) to 6 devices"),
                PlayRecord(device_id=device_id, seq=1, item_id="live:1ad973bb601a",
                           programme_id=None, priority="normal", planned_start=now,
                           actual_start=now, ended_at=now, outcome="played"),
            ]
        )  # fmt: skip
        db.commit()
    return {"clip": clip, "zone": zone_id, "device": device_id, "programme": programme,
            "draft": draft}  # fmt: skip


USERS = [("admin", ADMIN_PASSWORD)] + [(u[0], PASSWORD) for u in DEMO_USERS]


@pytest.mark.parametrize(("username", "password"), USERS, ids=[u for u, _ in USERS])
def test_every_page_is_in_vietnamese(demo: Demo, username: str, password: str) -> None:
    client = _sign_in(demo.stack, username, password)
    vocabulary = vietnamese_vocabulary(
        (
            "Thông báo tiêm phòng",
            "Bản tin sáng",
            "Nháp thông báo",
            "thong-bao",
            "testclient",
            "nguoimoi",
        )
    )
    found: dict[str, list[str]] = {}
    for template in PAGES:
        path = template.format(**demo.ids)
        r = client.get(path)
        assert r.status_code in (200, 403), (path, r.status_code)
        words = english_words(visible_text(r.text), vocabulary=vocabulary)
        if words:
            found[path] = sorted(set(words))
    assert not found, "\n".join(f"{p}: {w}" for p, w in found.items())


def _section(html: str, marker: str, end: str) -> str:
    start = html.index(marker)
    return html[start : html.index(end, start)]


def test_zones_are_labelled_by_their_org_unit(demo: Demo) -> None:
    client = _sign_in(demo.stack, "admin", ADMIN_PASSWORD)
    form = client.get("/programmes/new").text
    units = re.findall(r'<p class="zone-unit">([^<]+)</p>', form)
    assert "Xã Bảo Ninh" in units and "Xã Quảng Phú" in units
    assert form.count("> Toàn xã</label>") == 2  # once under each commune
    for path in ("/reports", "/programmes"):
        page = client.get(path).text
        assert (
            '<optgroup label="Xã Bảo Ninh">' in page and '<optgroup label="Xã Quảng Phú">' in page
        )
    listed = client.get("/programmes").text
    assert "Toàn xã (Xã Bảo Ninh)" in listed
    assert "Cụm loa Thôn Hải Thành (" not in listed  # its name already says where it is
    assert "Toàn xã (Xã Bảo Ninh)" in client.get(f"/programmes/{demo.ids['draft']}").text


def test_reports_list_clusters_by_name(demo: Demo) -> None:
    client = _sign_in(demo.stack, "kythuat", PASSWORD)
    rows = _section(
        client.get(f"/reports?zone_id={demo.ids['zone']}").text, 'id="report-rows"', "</table>"
    )
    assert "Cụm loa 01 – Thôn Hải Thành" in rows
    assert "bao-ninh-01" not in rows


def test_device_and_clip_pages_speak_plainly(demo: Demo) -> None:
    client = _sign_in(demo.stack, "kythuat", PASSWORD)
    html = client.get(f"/devices/{demo.ids['device']}").text
    main, tech = html.split('id="device-tech"', 1)
    for jargon in ("Tải CPU", "Loại phần cứng", "Phiên bản lịch", "bao-ninh-01", "Lịch (máy"):
        assert jargon not in main, jargon
    assert "Tải CPU" in tech and "bao-ninh-01" in tech  # the numbers stay, one click away
    assert "Thôn Hải Thành · Thôn Hải Thành" not in html  # the place, said once
    assert "Đã nhận lịch mới nhất" in main or "Chưa nhận lịch mới" in main or "Chưa có lịch" in main
    listed = client.get("/devices").text
    assert " / " not in visible_text(listed).replace("/ 1", "")  # no "3 / 3" version pairs
    clip = client.get(f"/clips/{demo.ids['clip']}").text
    assert "Âm lượng đã chuẩn hoá" in clip
