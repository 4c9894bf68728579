"""A programme's content as ordered items: clips, TTS text and scheduled relays (issue 15).

A running server with its broker on a fake clock, real SQLite (and PostgreSQL when
configured), real espeak-ng and ffmpeg for the TTS item. Province P holds communes A and B;
programmes belong to commune A. The relay settings are set away from their defaults, so the
schedule document shows they travel from the settings to the device.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from loa_testkit.stack import database
from server.audit.models import AuditEntry
from server.clips.models import Clip
from server.clips.storage import ClipStorage
from server.planner.models import ZoneClip
from tests.server.conftest import BACKENDS
from tests.server.test_programmes_fixtures import NOW, World, one_off, running_world
from tests.stack import skip_without_mosquitto

PUBLIC = "https://203.162.4.190/vov1"  # a public address: no DNS lookup
PASSWORD = "mat-khau-thu-1"
DELAY_MS, FALLBACK_AFTER_S = 2500, 4.5  # not the defaults (2000, 3.0)


@pytest.fixture(params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """A running server whose relay settings differ from the defaults."""
    skip_without_mosquitto()
    monkeypatch.setenv("LOA_RELAY_PLAYOUT_DELAY_MS", str(DELAY_MS))
    monkeypatch.setenv("LOA_RELAY_FALLBACK_AFTER_S", str(FALLBACK_AFTER_S))
    with database(request.param, tmp_path) as url, running_world(url, tmp_path / "data") as w:
        yield w


class Tree:
    """Province P, communes A and B below it, a zone with a device in A, relay sources."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.province = w.org("Tỉnh Thử")
        self.a = w.org("Xã A", parent_id=self.province)
        self.b = w.org("Xã B", parent_id=self.province)
        w.first_org = self.a
        self.device_id, self.uid, _password = w.device(self.a)
        self.zone = w.zone(self.a, device_ids=[self.device_id])
        self.vov = self.source("VOV1", self.province)  # above A: serves A
        self.fallback = w.clip(duration_s=15, title="Nhạc chờ")
        self.clip = w.clip(duration_s=60, title="Bản tin sáng")

    def source(self, name: str, org: int, *, enabled: bool = True) -> int:
        """A relay source registered by the global admin."""
        body = {"name": name, "url": PUBLIC, "kind": "provincial", "org_unit_id": org,
                "enabled": enabled}  # fmt: skip
        return int(self.w.post("/relay-sources", body, expect=201)["id"])

    def relay(self, source: int | None = None, duration_s: Any = 20, **extra: Any) -> Any:
        """A relay item."""
        return {"kind": "relay", "relay_source_id": source or self.vov, "duration_s": duration_s,
                "fallback_clip_id": self.fallback.id, **extra}  # fmt: skip

    def body(self, items: list[Any], *, hours: float = 24, **extra: Any) -> dict[str, Any]:
        """A one-off programme in A's zone with these items."""
        body = one_off([], [self.zone], at=NOW + timedelta(hours=hours), **extra)
        del body["clip_ids"]
        return body | {"items": items, "org_unit_id": self.a}


def _send(w: World, method: str, path: str, body: Any, headers: Any = None) -> Any:
    return w.client.request(method, f"/api/v1{path}", json=body, headers=headers or w.headers)


def _user(w: World, name: str, role: str, org: int) -> dict[str, str]:
    body = {"username": name, "password": PASSWORD, "role": role, "org_unit_id": org}
    w.post("/users", body, expect=201)
    r = w.client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _console(w: World, username: str) -> TestClient:
    """A browser signed in through the console's form (the session cookie is Secure)."""
    client = TestClient(w.stack.app, base_url="https://testserver")
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    form = {"username": username, "password": PASSWORD, "csrf": token.group(1), "next": "/"}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303
    return client


def _owned_clip(w: World, org: int) -> int:
    """A clip row owned by an org unit (random bytes on disk)."""
    data = os.urandom(1000)
    sha = hashlib.sha256(data).hexdigest()
    path = ClipStorage(w.stack.settings.data_dir / "clips").dist_path(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with w.stack.session() as db:  # type: ignore[no-untyped-call]
        clip = Clip(
            sha256=sha, original_sha256=sha, title="Bản tin xã B", original_duration_s=30,
            original_sample_rate=48000, original_channels=1, original_size_bytes=1000,
            duration_s=30, size_bytes=1000, peaks=[], org_unit_id=org,
        )  # fmt: skip
        db.add(clip)
        db.flush()
        return int(clip.id)


def test_items_are_stored_in_order_and_the_device_gets_the_relay(world: World) -> None:
    t = Tree(world)
    p = world.programme(**t.body([t.relay(), {"kind": "clip", "clip_id": t.clip.id}]))
    assert [(i["kind"], i["position"]) for i in p["items"]] == [("relay", 0), ("clip", 1)]
    assert p["items"][0]["relay"] == {
        "relay_source_id": t.vov, "relay_source_name": "VOV1", "duration_s": 20,
        "fallback_clip_id": t.fallback.id, "fallback_title": "Nhạc chờ",
    }  # fmt: skip
    assert p["items"][0]["clip"] is None and p["items"][1]["clip"]["id"] == t.clip.id
    assert p["clip_ids"] == [t.clip.id] and [c["id"] for c in p["clips"]] == [t.clip.id]
    assert p["duration_s"] == 80  # the relay counts
    assert world.get(f"/programmes/{p['id']}")["items"] == p["items"]
    # The console's programme page shows the relay, its length and its fallback, in order.
    _user(world, "editor-a", "editor", t.a)
    page = _console(world, "editor-a").get(f"/programmes/{p['id']}")
    assert page.status_code == 200, page.text[:300]
    shown = re.search(r"<dd>(Tiếp âm.*?)</dd>", page.text)
    assert shown is not None, page.text
    assert shown.group(1) == (
        f'Tiếp âm VOV1 trong 20.0 giây (dự phòng: <a href="/clips/{t.fallback.id}">Nhạc chờ</a>), '
        f'<a href="/clips/{t.clip.id}">Bản tin sáng</a>'
    )

    world.post(f"/programmes/{p['id']}/submit", expect=200)
    world.post(f"/programmes/{p['id']}/approve", expect=200)
    assert world.planner.wait_idle(30)
    doc = world.get(f"/devices/{t.device_id}/schedule")
    (item,) = doc["items"]
    start = NOW + timedelta(hours=24)
    assert [c["sha256"] for c in item["clips"]] == [t.clip.sha256]
    (relay,) = item["relays"]
    assert relay["session_id"] == f"r{p['id']}-{start:%Y%m%d%H%M%S}-0"
    assert (relay["before_clip"], relay["source_id"], relay["source_name"]) == (0, t.vov, "VOV1")
    assert (relay["duration_s"], relay["fallback"]["sha256"]) == (20, t.fallback.sha256)
    assert (relay["playout_delay_ms"], relay["fallback_after_s"]) == (DELAY_MS, FALLBACK_AFTER_S)
    assert datetime.fromisoformat(item["end"]) == start + timedelta(seconds=80)
    # The manifest holds the fallback, and the zone gets its chunks like any played clip.
    assert {c["sha256"] for c in doc["clips"]} == {t.clip.sha256, t.fallback.sha256}
    with world.stack.session() as db:  # type: ignore[no-untyped-call]
        queued = set(db.scalars(select(ZoneClip.sha256).where(ZoneClip.zone_id == t.zone)))
    assert queued == {t.clip.sha256, t.fallback.sha256}


def test_a_relay_only_programme_conflicts_over_its_whole_length(world: World) -> None:
    t = Tree(world)
    relay = world.programme(**t.body([t.relay(duration_s=600)], title="Tiếp sóng"))
    assert relay["clip_ids"] == [] and relay["duration_s"] == 600
    world.post(f"/programmes/{relay['id']}/submit", expect=200)
    # A clip starting 5 minutes into the 10-minute relay overlaps it.
    later = world.programme(**t.body([{"kind": "clip", "clip_id": t.clip.id}], hours=24 + 1 / 12))
    r = world.post(f"/programmes/{later['id']}/submit", expect=409)
    assert "Tiếp sóng" in r["detail"]


def test_clip_ids_still_work_and_may_not_come_with_items(world: World) -> None:
    t = Tree(world)
    p = world.programme(**one_off([t.clip.id, t.clip.id], [t.zone], at=NOW + timedelta(days=1)))
    assert [i["kind"] for i in p["items"]] == ["clip", "clip"] and p["duration_s"] == 120
    both = t.body([t.relay()]) | {"clip_ids": [t.clip.id]}
    r = world.programme(expect=422, **both)
    assert r["detail"].startswith("Give either clip_ids or items, not both")
    # PATCH: items replace the clips; clip_ids replace the items (relays included).
    r = _send(world, "PATCH", f"/programmes/{p['id']}", {"items": [t.relay()]})
    assert r.status_code == 200, r.text
    assert [i["kind"] for i in r.json()["items"]] == ["relay"] and r.json()["clip_ids"] == []
    r = _send(world, "PATCH", f"/programmes/{p['id']}", {"title": "Mới"})
    assert r.status_code == 200 and [i["kind"] for i in r.json()["items"]] == ["relay"]
    r = _send(world, "PATCH", f"/programmes/{p['id']}", {"clip_ids": [t.clip.id]})
    assert r.status_code == 200 and r.json()["clip_ids"] == [t.clip.id]
    assert [i["kind"] for i in r.json()["items"]] == ["clip"]
    r = _send(world, "PATCH", f"/programmes/{p['id']}", {"clip_ids": [1], "items": [t.relay()]})
    assert r.status_code == 422 and "not both" in r.json()["detail"]
    missing = one_off([], [t.zone], at=NOW + timedelta(days=1))
    del missing["clip_ids"]
    assert "at least one clip" in world.programme(expect=422, **missing)["detail"]
    # Every change is audited as before.
    with world.stack.session() as db:  # type: ignore[no-untyped-call]
        query = select(AuditEntry.action).where(
            AuditEntry.object_type == "programme", AuditEntry.object_id == str(p["id"])
        )
        actions = list(db.scalars(query.order_by(AuditEntry.id)))
    assert actions == ["programme.create"] + ["programme.update"] * 3


def test_a_relay_source_must_be_enabled_and_serve_the_programmes_unit(world: World) -> None:
    t = Tree(world)
    own = t.source("Đài xã A", t.a)
    foreign = t.source("Đài xã B", t.b)
    disabled = t.source("Đài tắt", t.province, enabled=False)
    below = t.source("Đài thôn", world.org("Thôn A1", parent_id=t.a))
    assert world.programme(**t.body([t.relay(own)]))["items"][0]["relay"]["relay_source_id"] == own
    for source in (foreign, disabled, below, 999_999):
        r = world.programme(expect=422, **t.body([t.relay(source)]))
        assert r["detail"] == f"Unknown relay source id(s): {source}.", r
    # A commune editor sees the same answer for B's source and for a missing one.
    editor = _user(world, "editor-a", "editor", t.a)
    for source in (foreign, 999_999):
        r = _send(world, "POST", "/programmes", t.body([t.relay(source)]) | {"org_unit_id": t.a},
                  headers=editor)  # fmt: skip
        assert (r.status_code, r.json()["detail"]) == (
            422, f"Unknown relay source id(s): {source}."
        ), r.text  # fmt: skip
    # ... and the province's source serves the commune.
    r = _send(world, "POST", "/programmes", t.body([t.relay()]), headers=editor)
    assert r.status_code == 201, r.text


def test_a_fallback_clip_outside_reach_is_unknown(world: World) -> None:
    t = Tree(world)
    editor = _user(world, "editor-a", "editor", t.a)
    theirs = _owned_clip(world, t.b)
    body = t.body([t.relay(fallback_clip_id=theirs)]) | {"org_unit_id": t.a}
    r = _send(world, "POST", "/programmes", body, headers=editor)
    assert (r.status_code, r.json()["detail"]) == (422, f"Unknown clip id(s): {theirs}."), r.text
    body["items"][0]["fallback_clip_id"] = 999_999
    r = _send(world, "POST", "/programmes", body, headers=editor)
    assert (r.status_code, r.json()["detail"]) == (422, "Unknown clip id(s): 999999."), r.text


def test_a_tts_item_becomes_a_clip_of_the_programmes_unit(world: World) -> None:
    t = Tree(world)
    text = "Xin chào bà con, sau đây là bản tin của xã."
    p = world.programme(**t.body([{"kind": "tts", "text": text}, t.relay()]))
    assert [i["kind"] for i in p["items"]] == ["clip", "relay"]
    clip_id = p["items"][0]["clip"]["id"]
    assert p["clip_ids"] == [clip_id] and p["items"][0]["clip"]["duration_s"] > 1
    clip = world.get(f"/clips/{clip_id}")
    assert clip["source"] == "tts" and clip["notes"] == text
    with world.stack.session() as db:  # type: ignore[no-untyped-call]
        stored = db.get(Clip, clip_id)
        assert stored is not None and stored.org_unit_id == t.a  # the programme's, not the admin's
    # An empty text, or more than the TTS limit, is refused with a sentence.
    r = world.programme(expect=422, **t.body([{"kind": "tts", "text": ""}]))
    assert r["detail"].startswith("Invalid request: items.0.tts.text")
    r = world.programme(expect=422, **t.body([{"kind": "tts", "text": "a " * 5000}]))
    assert "detail" in r


def test_a_fallback_clip_or_relay_source_in_use_cannot_be_removed(world: World) -> None:
    t = Tree(world)
    p = world.programme(**t.body([t.relay()], title="Tiếp sóng VOV"))
    r = _send(world, "DELETE", f"/clips/{t.fallback.id}", None)
    assert r.status_code == 409 and "'Tiếp sóng VOV'" in r.json()["detail"], r.text
    r = _send(world, "DELETE", f"/relay-sources/{t.vov}", None)
    assert r.status_code == 409 and "'Tiếp sóng VOV'" in r.json()["detail"], r.text
    r = _send(world, "PATCH", f"/relay-sources/{t.vov}", {"enabled": False})
    assert r.status_code == 409 and "disable" in r.json()["detail"], r.text
    assert _send(world, "PATCH", f"/relay-sources/{t.vov}", {"name": "VOV 1"}).status_code == 200
    second = world.programme(**t.body([t.relay()], title="Lần hai", hours=30))
    r = _send(world, "DELETE", f"/clips/{t.fallback.id}", None)
    assert "programmes 'Tiếp sóng VOV', 'Lần hai'" in r.json()["detail"], r.text
    # Finished programmes hold nothing back.
    for pid in (p["id"], second["id"]):
        world.post(f"/programmes/{pid}/cancel", expect=200)
    assert _send(world, "PATCH", f"/relay-sources/{t.vov}", {"enabled": False}).status_code == 200
    assert _send(world, "DELETE", f"/relay-sources/{t.vov}", None).status_code == 204
    assert _send(world, "DELETE", f"/clips/{t.fallback.id}", None).status_code == 204


BAD_ITEMS: list[Any] = [
    {"kind": "video", "clip_id": 1},
    {"clip_id": 1},
    "clip",
    None,
    {"kind": "clip"},
    {"kind": "clip", "clip_id": 0},
    {"kind": "clip", "clip_id": 2**40},
    {"kind": "clip", "clip_id": 1, "volume": 3},
    {"kind": "relay", "relay_source_id": 1, "duration_s": 20},
    {"kind": "tts"},
    {"kind": "tts", "text": "x", "voice": ""},
]
BAD_DURATIONS: list[Any] = [0, -5, 14_400.5, 10**30, "abc", None, "NaN", [20], "1e999"]


@pytest.mark.parametrize("item", BAD_ITEMS)
def test_garbage_items_are_refused_with_a_sentence(world: World, item: Any) -> None:
    t = Tree(world)
    r = _send(world, "POST", "/programmes", t.body([item]))
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("Invalid request: items"), r.text


def test_garbage_durations_and_lists_are_refused(world: World) -> None:
    t = Tree(world)
    for duration in BAD_DURATIONS:
        r = _send(world, "POST", "/programmes", t.body([t.relay(duration_s=duration)]))
        assert r.status_code == 422, (duration, r.text)
        assert re.match(r"Invalid request: items\.0\.relay\.duration_s", r.json()["detail"]), r.text
    ok = world.programme(**t.body([t.relay(duration_s=14_400)]))
    assert ok["duration_s"] == 14_400
    r = _send(world, "POST", "/programmes", t.body([{"kind": "clip", "clip_id": t.clip.id}] * 101))
    assert r.status_code == 422 and "items" in r.json()["detail"], r.text
    r = _send(world, "POST", "/programmes", t.body([]))
    assert r.status_code == 422 and "at least one clip or relay" in r.json()["detail"], r.text
    r = _send(world, "POST", "/programmes", t.body({"kind": "clip"}))  # type: ignore[arg-type]
    assert r.status_code == 422, r.text
    r = _send(world, "PATCH", f"/programmes/{ok['id']}", {"items": [{"kind": "relay"}]})
    assert r.status_code == 422 and r.json()["detail"].startswith("Invalid request"), r.text
    r = _send(world, "POST", "/programmes/check", t.body([t.relay(duration_s=-1)]))
    assert r.status_code == 422, r.text
