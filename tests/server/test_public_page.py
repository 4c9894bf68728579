"""The commune's public bulletin page, RSS feed and audio: only approved public bulletins.

One world per module (province P, communes A and B, real SQLite and a real broker); every
test sends its own bulletins with unique titles, so they never depend on each other's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import select

from loa_testkit.stack import ADMIN_PASSWORD
from server.bulletins.models import Bulletin
from server.clips.models import Clip
from server.clips.storage import ClipStorage
from tests.server.test_console import csrf_of, sign_in
from tests.server.test_permissions_fixtures import Org, PermWorld, running_perm_world

A_CODE, B_CODE = "PUB-A1", "PUB-B1"
MISSING = 987654
_n = itertools.count(1)


@dataclass
class World:
    """The permission world; communes A and B have public codes."""

    w: PermWorld
    a: Org
    b: Org
    clip: int  # a province clip, random bytes on disk

    def get(self, path: str, **kw: Any) -> Any:
        """An anonymous GET (no cookie, no token)."""
        self.w.client.cookies.clear()
        return self.w.client.get(path, **kw)

    def send(
        self,
        title: str,
        *,
        public: bool = True,
        level: str = "normal",
        units: list[int] | None = None,
        approve: bool = True,
        **fields: Any,
    ) -> int:
        """A bulletin the province sends (as the admin), approved unless told otherwise."""
        body = {
            "title": title,
            "level": level,
            "public": public,
            "clip_ids": [self.clip],
            "valid_until": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
            "target_org_unit_ids": units or [self.a.commune],
            **fields,
        }
        sent = self.w.admin("POST", "/bulletins", body, expect=201)
        assert sent["public"] is public
        if approve and sent["status"] == "submitted":
            self.w.admin("POST", f"/bulletins/{sent['id']}/approve", expect=200)
        return int(sent["id"])

    def clip_bytes(self) -> bytes:
        """The stored audio of the province clip."""
        with self.w.stack.session() as db:  # type: ignore[no-untyped-call]
            clip = db.get(Clip, self.clip)
            assert clip is not None
            path = ClipStorage(self.w.stack.settings.data_dir / "clips").dist_path(clip.sha256)
        return path.read_bytes()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("public")
    with running_perm_world("sqlite", tmp) as w:
        assert w.a is not None and w.b is not None
        w.admin("PATCH", f"/org-units/{w.a.commune}", {"code": A_CODE}, expect=200)
        w.admin("PATCH", f"/org-units/{w.b.commune}", {"code": B_CODE}, expect=200)
        yield World(w=w, a=w.a, b=w.b, clip=w.db_clip(w.province))


def _title(label: str) -> str:
    return f"{label} số {next(_n)}"


def _feed(world: World, code: str) -> ET.Element:
    r = world.get(f"/p/{code}/feed.xml")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/rss+xml; charset=utf-8"
    return ET.fromstring(r.content)


def _feed_titles(world: World, code: str) -> list[str]:
    return [t.text or "" for t in _feed(world, code).iter("title")]


def test_a_public_approved_bulletin_shows_with_text_and_playable_audio(world: World) -> None:
    title = _title("Lịch tiêm chủng")
    bid = world.send(title, text="Tiêm vắc-xin tại trạm y tế xã, sáng thứ Bảy.")
    r = world.get(f"/p/{A_CODE}")
    assert r.status_code == 200
    html = r.text
    # Server-rendered: everything is in the raw HTML, no script needed.
    assert "<script" not in html
    assert "Bản tin Xã An Bình" in html and title in html
    assert "Tiêm vắc-xin tại trạm y tế xã, sáng thứ Bảy." in html
    assert "Thông thường" in html
    audio = f"/p/{A_CODE}/audio/{bid}"
    assert f'<audio controls preload="none" src="{audio}">' in html
    assert f'href="/p/{A_CODE}/phan-anh"' in html
    assert r.headers["cache-control"] == "public, max-age=60"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in r.headers
    played = world.get(audio)
    assert played.status_code == 200 and played.headers["content-type"] == "audio/ogg"
    assert played.content == world.clip_bytes()
    assert played.headers["cache-control"] == "public, max-age=60"
    part = world.get(audio, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == world.clip_bytes()[:100]
    head = world.w.client.head(audio)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(world.clip_bytes()))
    # Another commune does not show it, nor serve its audio.
    assert title not in world.get(f"/p/{B_CODE}").text
    assert world.get(f"/p/{B_CODE}/audio/{bid}").status_code == 404


def test_a_communes_own_public_bulletin_shows_on_its_page(world: World) -> None:
    title = _title("Họp dân thôn")
    body = {
        "title": title,
        "public": True,
        "clip_ids": [world.a.clip],
        "valid_until": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
        "target_org_unit_ids": [world.a.village],
    }
    r = world.w.client.post("/api/v1/bulletins", json=body, headers=world.w.headers("editor"))
    assert r.status_code == 201, r.text
    bid = r.json()["id"]
    assert title not in world.get(f"/p/{A_CODE}").text  # submitted: not yet
    r = world.w.client.post(f"/api/v1/bulletins/{bid}/approve", headers=world.w.headers("approver"))
    assert r.status_code == 200, r.text
    assert title in world.get(f"/p/{A_CODE}").text
    assert world.get(f"/p/{A_CODE}/audio/{bid}").status_code == 200
    assert title not in world.get(f"/p/{B_CODE}").text


def test_nothing_that_is_not_approved_and_public_ever_appears(world: World) -> None:
    shown = world.send(_title("Tin công khai"))
    hidden = {
        "private": world.send(_title("Tin nội bộ"), public=False),
        "submitted": world.send(_title("Tin chờ duyệt"), approve=False),
        "rejected": world.send(_title("Tin bị trả lại"), approve=False),
        "cancelled": world.send(_title("Tin thu hồi")),
        "declined": world.send(_title("Tin xã từ chối")),
        "other commune": world.send(_title("Tin xã khác"), units=[world.b.commune]),
    }
    world.w.admin("POST", f"/bulletins/{hidden['rejected']}/reject", {"reason": "Sai"}, 200)
    world.w.admin("POST", f"/bulletins/{hidden['cancelled']}/cancel", expect=200)
    r = world.w.client.post(
        f"/api/v1/bulletins/{hidden['declined']}/decline",
        json={"reason": "Không phù hợp"},
        headers=world.w.headers("operator"),
    )
    assert r.status_code == 200, r.text
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        titles = {b.id: b.title for b in db.scalars(select(Bulletin))}
    html = world.get(f"/p/{A_CODE}").text
    feed = _feed_titles(world, A_CODE)
    assert titles[shown] in html and titles[shown] in feed
    missing = world.get(f"/p/{A_CODE}/audio/{MISSING}")
    assert missing.status_code == 404
    for why, bid in hidden.items():
        assert titles[bid] not in html, why
        assert titles[bid] not in feed, why
        r = world.get(f"/p/{A_CODE}/audio/{bid}")
        assert r.status_code == 404, why
        assert r.text == missing.text, why  # the same answer as a bulletin that never existed
    # Commune B shows its own bulletin, none of A's.
    b_html = world.get(f"/p/{B_CODE}").text
    assert titles[hidden["other commune"]] in b_html and titles[shown] not in b_html


def test_emergencies_in_force_stand_on_top_of_page_and_feed(world: World) -> None:
    urgent = _title("Bão khẩn cấp")
    later = _title("Lũ sắp tới")
    world.send(urgent, level="emergency", text="Sơ tán ngay khỏi vùng trũng.")
    coming = world.send(later, level="emergency")
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        row = db.get(Bulletin, coming)
        assert row is not None
        row.valid_from = datetime.now(UTC) + timedelta(days=1)  # not in force yet
    newer = _title("Tin thường mới hơn")
    world.send(newer)
    html = world.get(f"/p/{A_CODE}").text
    block = html.index('class="pub-emergency"')
    assert "Thông báo khẩn cấp đang có hiệu lực" in html and "Khẩn cấp" in html
    assert block < html.index(urgent) < html.index('id="ban-tin"') < html.index(newer)
    assert html.index('id="ban-tin"') < html.index(later)  # not in force: with the rest
    items = _feed(world, A_CODE).findall("./channel/item")
    assert urgent in (items[0].findtext("title") or "")


def test_rss_feed_is_valid_with_audio_enclosures(world: World) -> None:
    title = _title("Thông báo nộp thuế")
    bid = world.send(title, level="priority", text="Hạn cuối ngày 20.")
    root = _feed(world, A_CODE)
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel is not None
    assert "Xã An Bình" in (channel.findtext("title") or "")
    item = next(i for i in channel.findall("item") if title in (i.findtext("title") or ""))
    assert item.findtext("description") == "Hạn cuối ngày 20."
    assert item.findtext("guid") == f"loa-bulletin-{bid}"
    published = parsedate_to_datetime(item.findtext("pubDate") or "")
    assert abs(published - datetime.now(UTC)) < timedelta(minutes=5)
    enclosure = item.find("enclosure")
    assert enclosure is not None and enclosure.get("type") == "audio/ogg"
    url = enclosure.get("url") or ""
    assert url == f"http://testserver/p/{A_CODE}/audio/{bid}"
    audio = world.get(url.removeprefix("http://testserver"))
    assert audio.status_code == 200
    assert enclosure.get("length") == str(len(audio.content)) == str(len(world.clip_bytes()))


def test_script_in_titles_and_text_is_escaped(world: World) -> None:
    title = f"<script>alert('t{next(_n)}')</script>"
    text = "<img src=x onerror=alert(1)> & còn nữa"
    world.send(title, text=text)
    html = world.get(f"/p/{A_CODE}").text
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt; &amp; còn nữa" in html
    root = _feed(world, A_CODE)  # parses: the XML is escaped
    item = next(i for i in root.iter("item") if i.findtext("title") == title)
    assert item.findtext("description") == text


def test_unknown_commune_is_a_vietnamese_404(world: World) -> None:
    for path in ("/p/KHONG-CO", "/p/KHONG-CO/feed.xml", f"/p/KHONG-CO/audio/{MISSING}"):
        r = world.get(path)
        assert r.status_code == 404, path
        assert "Không tìm thấy trang" in r.text, path
    assert world.get("/p/" + "x" * 400).status_code == 404
    assert world.get("/p/%3Cscript%3E").status_code == 404


def test_console_form_marks_a_bulletin_public(world: World) -> None:
    client = sign_in(world.w, "admin", ADMIN_PASSWORD)
    form = client.get("/bulletins/new").text
    assert "Công khai trên trang thông tin của xã" in form
    title = _title("Thông báo từ bàn điều khiển")
    until = datetime.now(UTC) + timedelta(days=3)
    data = {
        "csrf": csrf_of(client, "/bulletins/new"),
        "title": title,
        "level": "normal",
        "clip_ids": [str(world.clip)],
        "targets": [str(world.a.commune)],
        "until_day": f"{until:%d/%m/%Y}",
        "until_at": "18:00",
        "public": "true",
    }
    r = client.post("/bulletins/new", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        row = db.scalar(select(Bulletin).where(Bulletin.title == title))
        assert row is not None and row.public is True
