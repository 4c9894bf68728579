"""CAP 1.2 in and out through the API: POST /api/v1/cap and GET /api/v1/cap/feed.atom.

A running server on real SQLite (and PostgreSQL when configured), real TTS (espeak-ng) and
ffmpeg. Province P (code 01) › commune A (code 00001) › village A1 with cluster 1 at
21.03,105.85; P › commune B (code 00002) with cluster 2 at 22.00,106.50. Sources are
registered on P: the disaster office (emergency, trusted) and a department (normal only).
"""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loa_testkit.stack import Stack
from server.audit.models import AuditEntry
from server.bulletins.models import (
    APPROVED,
    CANCELLED,
    WITHDRAWN,
    Bulletin,
    BulletinDelivery,
)
from server.cap.alert import CapResource
from server.cap.level import alert_level
from server.cap.models import CapMessage
from server.cap.parse import parse_alert
from server.cap.resource import fetch
from server.clips.models import Clip
from server.devices.models import Device
from server.domain import DomainError
from server.live.urlguard import AllowList
from server.programmes.models import Programme
from tests.server.test_permissions_fixtures import tone_wav

CAP_TYPE = {"Content-Type": "application/cap+xml"}


@dataclass
class World:
    """The stack, the units' ids and the two source keys."""

    stack: Stack
    p: int
    a: int
    a1: int
    b: int
    office: str  # the disaster office's key: emergency, trusted
    department: str  # a department's key: normal only

    def post(self, xml: str | bytes, key: str | None = None, **headers: str) -> Any:
        """POST /api/v1/cap with a source key (the office's by default)."""
        data = xml.encode() if isinstance(xml, str) else xml
        auth = {"Authorization": f"Bearer {key or self.office}"}
        return self.stack.client.post(
            "/api/v1/cap", content=data, headers=CAP_TYPE | auth | headers
        )

    def count(self, model: Any) -> int:
        """Rows of a table."""
        with _db(self.stack) as db:
            return int(db.scalar(select(func.count()).select_from(model)) or 0)

    def receivers(self, bulletin_id: int) -> list[int]:
        """The org units that got a delivery of the bulletin."""
        with _db(self.stack) as db:
            rows = db.scalars(
                select(BulletinDelivery.org_unit_id).where(
                    BulletinDelivery.bulletin_id == bulletin_id
                )
            )
            return sorted(rows)


def _db(stack: Stack) -> AbstractContextManager[Session]:
    return stack.session()  # type: ignore[no-untyped-call,no-any-return]


def _unit(stack: Stack, name: str, kind: str, parent: int | None, code: str) -> int:
    body = {"name": name, "kind": kind, "parent_id": parent, "code": code}
    r = stack.client.post("/api/v1/org-units", json=body, headers=stack.headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _cluster(stack: Stack, unit: int, uid: str, lat: float, lon: float) -> int:
    body = {"uid": uid, "name": uid, "org_unit_id": unit, "firmware_profile": "sim"}
    r = stack.client.post("/api/v1/devices", json=body, headers=stack.headers)
    assert r.status_code == 201, r.text
    device_id = int(r.json()["device"]["id"])
    zone = {"org_unit_id": unit, "name": f"Vùng {uid}", "device_ids": [device_id]}
    r = stack.client.post("/api/v1/zones", json=zone, headers=stack.headers)
    assert r.status_code == 201, r.text
    with _db(stack) as db:  # coordinates are set by the installer, not through this API
        device = db.get(Device, device_id)
        assert device is not None
        device.latitude, device.longitude = lat, lon
    return device_id


def _source(stack: Stack, unit: int, max_level: str, trusted: list[str]) -> str:
    body = {"name": f"Nguồn {max_level}", "org_unit_id": unit, "max_level": max_level}
    body["trusted_levels"] = trusted
    r = stack.client.post("/api/v1/sources", json=body, headers=stack.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


@pytest.fixture
def world(api: Stack) -> Iterator[World]:
    p = _unit(api, "Tỉnh Thử", "province", None, "01")
    a = _unit(api, "Xã An Bình", "commune", p, "00001")
    a1 = _unit(api, "Thôn Một", "village", a, "00001-1")
    b = _unit(api, "Xã Bình Minh", "commune", p, "00002")
    _cluster(api, a1, "cap-a1", 21.03, 105.85)
    _cluster(api, b, "cap-b", 22.00, 106.50)
    office = _source(api, p, "emergency", ["emergency"])
    department = _source(api, p, "normal", [])
    yield World(api, p, a, a1, b, office, department)


def _when(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).replace(microsecond=0).isoformat()


def cap(
    identifier: str,
    *,
    urgency: str = "Immediate",
    severity: str = "Extreme",
    expires: timedelta | None = timedelta(hours=6),
    geocodes: tuple[str, ...] = ("00001",),
    polygon: str | None = None,
    circle: str | None = None,
    msg_type: str = "Alert",
    status: str = "Actual",
    references: tuple[str, ...] = (),
    resource: tuple[str, str] | None = None,
) -> str:
    """A CAP 1.2 alert from the disaster office, Vietnamese text, text only unless resource."""
    refs = " ".join(f"pctt@quangninh.gov.vn,{r},{_when(-timedelta(minutes=5))}" for r in references)
    area = "".join(
        f"<geocode><valueName>MA_DVHC</valueName><value>{c}</value></geocode>" for c in geocodes
    )
    area += f"<polygon>{polygon}</polygon>" if polygon else ""
    area += f"<circle>{circle}</circle>" if circle else ""
    res = ""
    if resource is not None:
        mime, uri = resource
        res = f"<resource><resourceDesc>Bản đọc</resourceDesc><mimeType>{mime}</mimeType>"
        res += f"<uri>{uri}</uri></resource>"
    expiry = f"<expires>{_when(expires)}</expires>" if expires is not None else ""
    info = (
        "<info><language>vi-VN</language><category>Met</category><event>Lũ quét</event>"
        f"<urgency>{urgency}</urgency><severity>{severity}</severity>"
        f"<certainty>Observed</certainty>{expiry}"
        "<headline>Cảnh báo lũ quét</headline>"
        "<description>Mưa lớn gây lũ quét ở các xã vùng núi.</description>"
        "<instruction>Người dân sơ tán lên vùng cao.</instruction>"
        f"{res}<area><areaDesc>Vùng núi</areaDesc>{area}</area></info>"
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
        f"<identifier>{identifier}</identifier><sender>pctt@quangninh.gov.vn</sender>"
        f"<sent>{_when(timedelta(0))}</sent><status>{status}</status>"
        f"<msgType>{msg_type}</msgType><scope>Public</scope>"
        + (f"<references>{refs}</references>" if refs else "")
        + (info if msg_type != "Cancel" else "")
        + "</alert>"
    )


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
    with _db(world.stack) as db:
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
    with _db(world.stack) as db:
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
    with _db(world.stack) as db:
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
    q = _unit(world.stack, "Tỉnh Khác", "province", None, "02")
    _unit(world.stack, "Xã Ngoài", "commune", q, "00003")
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
    wav = tone_wav(1.0, 523.0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = wav if self.path == "/tone.wav" else b"not audio at all\n" * 50
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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
    with _db(world.stack) as db:
        bulletin = db.get(Bulletin, ok.json()["bulletin_id"])
        assert bulletin is not None and bulletin.tts_clip_id is None
        clip = db.get(Clip, bulletin.clips[0].clip_id)
        assert clip is not None and clip.source == "cap" and 0.9 < clip.duration_s < 1.2
