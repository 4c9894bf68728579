"""CAP 1.2 in and out through the API: POST /api/v1/cap and GET /api/v1/cap/feed.atom.

A running server on real SQLite (and PostgreSQL when configured), real TTS (espeak-ng) and
ffmpeg, in the world of tests/server/cap/world.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from loa_testkit.stack import Stack
from server.audit.models import AuditEntry
from server.bulletins.models import APPROVED, CANCELLED, WITHDRAWN, Bulletin, BulletinDelivery
from server.cap.alert import CapResource
from server.cap.level import alert_level
from server.cap.models import CapMessage
from server.cap.parse import parse_alert
from server.cap.resource import fetch
from server.clips.models import Clip
from server.domain import DomainError
from server.live.urlguard import AllowList
from server.programmes.models import Programme
from tests.server.cap.world import Served, World, add_unit, build_world, cap, db_of, file_server
from tests.server.test_permissions_fixtures import tone_wav


@pytest.fixture
def world(api: Stack) -> World:
    return build_world(api)


def test_the_same_alert_twice_plays_once(world: World) -> None:
    first = world.post(cap("LQ-1"))
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["level"] == "emergency" and body["bulletin_status"] == APPROVED
    assert body["repeat"] is False and not body["logged_only"]
    again = world.post(cap("LQ-1"))
    assert again.status_code == 200, again.text
    assert again.json()["bulletin_id"] == body["bulletin_id"] and again.json()["repeat"]
    assert world.count(Bulletin) == 1
    assert world.count(CapMessage) == 1
    with db_of(world.stack) as db:
        bulletin = db.get(Bulletin, body["bulletin_id"])
        assert bulletin is not None
        assert bulletin.title == "Cảnh báo lũ quét"
        assert "sơ tán lên vùng cao" in bulletin.text
        # Text only: spoken by TTS before the bulletin was sent (its start is then fresh).
        [spoken] = [db.get(Clip, c.clip_id) for c in bulletin.clips]
        assert spoken is not None and spoken.source == "tts" and spoken.duration_s > 1
        # One emergency programme per receiving commune, made once.
        count = db.scalar(
            select(func.count(Programme.id)).where(Programme.bulletin_id == bulletin.id)
        )
        assert count == 1
        actions = list(
            db.scalars(select(AuditEntry.action).where(AuditEntry.action == "cap.receive"))
        )
        assert actions == ["cap.receive"]


def test_cancel_withdraws_the_bulletin_and_its_programmes(world: World) -> None:
    bulletin_id = world.post(cap("LQ-2")).json()["bulletin_id"]
    r = world.post(cap("LQ-2-C", msg_type="Cancel", references=("LQ-2",)))
    assert r.status_code == 201, r.text
    assert r.json()["cancelled_bulletin_ids"] == [bulletin_id]
    assert r.json()["bulletin_status"] == CANCELLED
    with db_of(world.stack) as db:
        bulletin = db.get(Bulletin, bulletin_id)
        assert bulletin is not None and bulletin.status == CANCELLED
        statuses = db.scalars(
            select(BulletinDelivery.status).where(BulletinDelivery.bulletin_id == bulletin_id)
        )
        assert set(statuses) == {WITHDRAWN}
        # Nothing of it is planned any more (a short spoken alert may have ended already).
        programmes = db.scalars(
            select(Programme.status).where(Programme.bulletin_id == bulletin_id)
        )
        assert set(programmes) <= {"cancelled", "ended"}
    unknown = world.post(cap("LQ-X-C", msg_type="Cancel", references=("never-sent",)))
    assert unknown.status_code == 422 and "never received" in unknown.json()["detail"]


def test_update_replaces_the_earlier_bulletin(world: World) -> None:
    old = world.post(cap("LQ-3")).json()["bulletin_id"]
    r = world.post(cap("LQ-3-U", msg_type="Update", references=("LQ-3",), geocodes=("00002",)))
    assert r.status_code == 201, r.text
    new = r.json()["bulletin_id"]
    assert new != old and r.json()["cancelled_bulletin_ids"] == [old]
    with db_of(world.stack) as db:
        assert db.get(Bulletin, old).status == CANCELLED  # type: ignore[union-attr]
        assert db.get(Bulletin, new).status == APPROVED  # type: ignore[union-attr]
    assert world.receivers(new) == [world.b]


def test_an_expired_alert_or_one_without_expiry_is_refused(world: World) -> None:
    r = world.post(cap("LQ-4", expires=-timedelta(minutes=1)))
    assert r.status_code == 422 and r.json()["detail"].startswith("The alert expired at")
    r = world.post(cap("LQ-5", expires=None))
    assert r.status_code == 422 and "<expires>" in r.json()["detail"]
    assert world.count(Bulletin) == 0 and world.count(CapMessage) == 0


def test_xxe_and_wrong_media_types_are_refused_and_read_nothing(world: World) -> None:
    xxe = (
        '<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&x;</identifier>'
        "</alert>"
    )
    r = world.post(xxe)
    assert r.status_code == 422 and "DTD" in r.json()["detail"]
    assert "root:" not in r.text
    r = world.post(cap("LQ-6"), **{"Content-Type": "application/json"})
    assert r.status_code == 415
    r = world.post(b"<alert" + b" " * 300_000 + b"/>")
    assert r.status_code == 413
    assert world.count(Bulletin) == 0 and world.count(CapMessage) == 0


def test_geocodes_polygons_and_circles_pick_the_targets(world: World) -> None:
    by_code = world.post(cap("LQ-7", geocodes=("00002", "99999")))
    assert by_code.status_code == 201, by_code.text
    assert world.receivers(by_code.json()["bulletin_id"]) == [world.b]
    # Around cluster 1 (village A1): commune A gets it, B does not.
    square = "21.0,105.8 21.1,105.8 21.1,105.9 21.0,105.9 21.0,105.8"
    by_polygon = world.post(cap("LQ-8", geocodes=(), polygon=square))
    assert by_polygon.status_code == 201, by_polygon.text
    assert world.receivers(by_polygon.json()["bulletin_id"]) == [world.a]
    by_circle = world.post(cap("LQ-9", geocodes=(), circle="22.01,106.51 5"))
    assert by_circle.status_code == 201, by_circle.text
    assert world.receivers(by_circle.json()["bulletin_id"]) == [world.b]
    # A code of another province is not the source's to target: left out, like an unknown one.
    q = add_unit(world.stack, "Tỉnh Khác", "province", None, "02")
    add_unit(world.stack, "Xã Ngoài", "commune", q, "00003")
    mixed = world.post(cap("LQ-7b", geocodes=("00001", "00003")))
    assert mixed.status_code == 201, mixed.text
    assert world.receivers(mixed.json()["bulletin_id"]) == [world.a]
    nowhere = world.post(cap("LQ-10", geocodes=("00003",), circle="10.0,106.0 5"))
    assert nowhere.status_code == 422
    assert nowhere.json()["detail"] == "The alert's area matches no org unit or cluster of yours."


def test_a_source_cannot_post_above_its_level(world: World) -> None:
    r = world.post(cap("LQ-11"), key=world.department)
    assert r.status_code == 403, r.text
    # Refused before anything is spoken or fetched, with the level CAP's words mapped to.
    assert r.json()["detail"].startswith("This alert is emergency")
    assert world.count(Bulletin) == 0 and world.count(CapMessage) == 0
    normal = world.post(cap("LQ-12", urgency="Future", severity="Minor"), key=world.department)
    assert normal.status_code == 201, normal.text
    assert normal.json()["level"] == "normal" and normal.json()["bulletin_status"] == "submitted"


def test_test_alerts_are_logged_only(world: World) -> None:
    r = world.post(cap("LQ-13", status="Test"))
    assert r.status_code == 201, r.text
    assert r.json()["logged_only"] and r.json()["bulletin_id"] is None
    assert world.count(Bulletin) == 0 and world.count(CapMessage) == 1


def test_the_feed_lists_a_live_emergency_as_valid_cap(world: World) -> None:
    posted = world.post(cap("LQ-14")).json()
    r = world.stack.client.get("/api/v1/cap/feed.atom")  # no sign-in: public
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/atom+xml")
    alerts = _alerts(r.content)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.identifier == f"loa.bulletin.{posted['bulletin_id']}"
    assert alert.msg_type == "Alert" and alert_level(alert).value == "emergency"
    info = alert.infos[0]
    assert info.headline == "Cảnh báo lũ quét"
    assert info.expires == datetime.fromisoformat(posted["valid_until"])
    assert [g for a in info.areas for g in a.geocodes] == [("MA_DVHC", "00001")]
    world.post(cap("LQ-14-C", msg_type="Cancel", references=("LQ-14",)))
    after = _alerts(world.stack.client.get("/api/v1/cap/feed.atom").content)
    assert [a.msg_type for a in after] == ["Cancel"]
    assert after[0].references[0].identifier == alert.identifier


def _alerts(feed: bytes) -> list[Any]:
    """Every CAP alert inside the feed's entries, parsed back with the intake's own parser."""
    text = feed.decode()
    found = re.findall(
        r"<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">.*?</alert>", text, re.S
    )
    return [parse_alert(a.encode()) for a in found]


def test_a_resource_host_not_on_the_list_is_never_connected_to() -> None:
    resource = CapResource("Bản đọc", "audio/mpeg", uri="http://audio.example.org/a.mp3")
    public = ["93.184.216.34"]  # public: the relay guard alone would let it through
    with pytest.raises(DomainError) as refused:
        fetch(
            resource,
            allow=AllowList.parse("127.0.0.1"),
            dest=Path("/nonexistent/never-written"),
            max_bytes=1000,
            resolve=lambda host, port: public,
        )
    assert refused.value.status == 422 and "has not allowed" in refused.value.detail


@pytest.fixture
def audio_server() -> Iterator[str]:
    """A local HTTP server: /tone.wav is audio, /page.txt is not."""
    files = {
        "/tone.wav": Served(tone_wav(1.0, 523.0), "audio/wav"),
        "/page.txt": Served(b"not audio at all\n" * 50, "text/plain"),
    }
    with file_server(files) as (base, _hits):
        yield base


def test_audio_comes_only_from_allowed_hosts_and_must_be_audio(
    world: World, audio_server: str
) -> None:
    settings = world.stack.settings
    tone = ("audio/wav", f"{audio_server}/tone.wav")
    refused = world.post(cap("LQ-15", resource=tone))
    assert refused.status_code == 422 and "not allowed" in refused.json()["detail"]
    assert world.count(Bulletin) == 0 and world.count(Clip) == 0
    settings.cap_resource_allowed_hosts = "127.0.0.1"
    try:
        page = world.post(cap("LQ-16", resource=("audio/mpeg", f"{audio_server}/page.txt")))
        assert page.status_code == 422, page.text
        assert world.count(Bulletin) == 0
        ok = world.post(cap("LQ-17", resource=tone))
        assert ok.status_code == 201, ok.text
    finally:
        settings.cap_resource_allowed_hosts = ""
    with db_of(world.stack) as db:
        bulletin = db.get(Bulletin, ok.json()["bulletin_id"])
        assert bulletin is not None and bulletin.tts_clip_id is None
        clip = db.get(Clip, bulletin.clips[0].clip_id)
        assert clip is not None and clip.source == "cap" and 0.9 < clip.duration_s < 1.2
