"""The dashboard agrees with itself: offline clusters need attention, today lists every item."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schedules import playback_item_id
from server.devices.models import Device
from server.plays.models import PlayRecord
from server.programmes.models import ENDED, Programme
from tests.server.test_console import sign_in
from tests.server.test_console_reports import Clock
from tests.server.test_permissions_fixtures import PermWorld, running_perm_world

MORNING = datetime(2031, 3, 3, 0, 0, tzinfo=UTC)  # Monday 07:00 in Vietnam
NOW = MORNING + timedelta(hours=3)  # 10:00


@pytest.fixture
def world(tmp_path: Path) -> Iterator[PermWorld]:
    with running_perm_world("sqlite", tmp_path) as w:
        yield w


def _box(html: str, heading: str) -> str:
    """The card under this heading."""
    start = html.index(heading)
    return html[start : html.index("</div>", start)]


def _approved_once(w: PermWorld, title: str, start: datetime) -> int:
    assert w.a is not None
    body = {
        "title": title,
        "clip_ids": [w.a.clip],
        "zone_ids": [w.a.zone],
        "start": start.isoformat(),
        "org_unit_id": w.a.commune,
    }
    pid = int(w.admin("POST", "/programmes", body, expect=201)["id"])
    w.admin("POST", f"/programmes/{pid}/submit", expect=200)
    w.admin("POST", f"/programmes/{pid}/approve", expect=200)
    return pid


def test_offline_cluster_is_counted_and_listed_first(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    hot = w.device(w.a.village)
    with w.stack.session() as db:
        offline = db.get(Device, w.a.device)
        assert offline is not None and not offline.online
        offline.name = "Zz cụm mất kết nối"
        warm = db.get(Device, hot)
        assert warm is not None
        warm.name = "Aa cụm quá nóng"
        warm.online = True
        warm.telemetry = {"cpu_temp_c": 82.0}
        warm.telemetry_at = datetime.now(UTC)
        db.commit()
    html = sign_in(w, "technician-a").get("/").text
    counted = re.search(r"<strong>(\d+)</strong><span>cần kiểm tra</span>", html)
    assert counted is not None and int(counted.group(1)) == 2
    box = _box(html, "Cụm loa cần kiểm tra")
    assert "Mọi cụm loa đều ổn" not in box
    assert box.index("Zz cụm mất kết nối") < box.index("Aa cụm quá nóng")
    assert "Mất kết nối" in box
    listed = sign_in(w, "technician-a").get("/devices?status=alarm").text
    assert "Zz cụm mất kết nối" in listed and "Aa cụm quá nóng" in listed


def test_today_lists_what_played_and_what_is_to_come(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    clock = Clock(MORNING)
    w.stack.app.state.clock = clock
    played_at = MORNING + timedelta(hours=1)  # 08:00
    done = _approved_once(w, "Thông báo họp thôn", played_at)
    later = _approved_once(w, "Bản tin chiều", MORNING + timedelta(hours=10))  # 17:00
    silent = _approved_once(w, "Tin không báo cáo", MORNING + timedelta(hours=2))  # 09:00
    with w.stack.session() as db:
        programme = db.get(Programme, done)
        assert programme is not None
        programme.status = ENDED  # what the planner does once a one-off has played
        db.add(
            PlayRecord(
                device_id=w.a.device,
                seq=1,
                item_id=playback_item_id(done, played_at),
                programme_id=done,
                priority="normal",
                planned_start=played_at,
                actual_start=played_at + timedelta(seconds=1),
                outcome="played",
            )
        )
        db.commit()
    clock.now = NOW
    html = sign_in(w, "viewer-a").get("/").text
    box = _box(html, "Lịch phát hôm nay")
    assert "Hôm nay không có chương trình nào" not in box
    items = re.findall(r'<li class="today-item state-(\w+)">(.*?)</li>', box, re.S)
    shown = [(state, re.search(r"<time>([\d:]+)</time>", body).group(1)) for state, body in items]  # type: ignore[union-attr]
    assert shown == [("played", "08:00"), ("no_report", "09:00"), ("upcoming", "17:00")]
    assert "Đã phát (1/1 cụm loa)" in box and "Sắp tới" in box and "Chưa có báo cáo" in box
    assert f"/programmes/{done}" in box and f"/programmes/{later}" in box
    assert f"/programmes/{silent}" in box
