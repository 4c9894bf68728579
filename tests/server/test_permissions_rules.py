"""The reach rules one by one: lists, province users, shared clips, emergencies, sign-in."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from server.db import utcnow
from server.plays.models import PlayRecord
from server.users.models import AuthToken
from tests.server.test_permissions_fixtures import (
    PASSWORD,
    Org,
    PermWorld,
    tone_wav,
)


def _orgs(w: PermWorld) -> tuple[Org, Org]:
    assert w.a is not None and w.b is not None
    return w.a, w.b


def _get(w: PermWorld, path: str, headers: dict[str, str], **params: Any) -> Any:
    r = w.client.get(f"/api/v1{path}", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _add_play(w: PermWorld, device_id: int, seq: int) -> None:
    with w.stack.session() as db:
        now = utcnow()
        db.add(
            PlayRecord(
                device_id=device_id,
                seq=seq,
                item_id=f"1@{seq}",
                priority="normal",
                planned_start=now,
                actual_start=now,
                outcome="played",
            )
        )


def test_lists_hold_only_the_callers_subtree(perm_world: PermWorld) -> None:
    w = perm_world
    a, b = _orgs(w)
    own_programme = w.programme(a)
    foreign_programme = w.programme(b)
    _add_play(w, a.device, 1)
    _add_play(w, b.device, 1)
    for role in w.tokens:
        h = w.headers(role)
        devices = {d["id"] for d in _get(w, "/devices", h)["items"]}
        assert a.device in devices and b.device not in devices, role
        zones = {z["id"] for z in _get(w, "/zones", h)}
        assert a.zone in zones and b.zone not in zones, role
        units = {u["id"] for u in _get(w, "/org-units", h)}
        assert {a.commune, a.village} <= units and not units & {b.commune, b.village, w.province}
        clips = {c["id"] for c in _get(w, "/clips", h)["items"]}
        assert a.clip in clips and b.clip not in clips, role
        programmes = {p["id"] for p in _get(w, "/programmes", h)["items"]}
        assert own_programme in programmes and foreign_programme not in programmes, role
        plays = {p["device_id"] for p in _get(w, "/plays", h)["items"]}
        assert plays == {a.device}, role
    admin = w.headers("admin")
    users = {u["username"] for u in _get(w, "/users", admin)}
    assert "editor-a" in users and "admin" not in users  # the global admin is above commune A
    audit = _get(w, "/audit", admin, limit=1000)["items"]
    assert audit and all(e["org_unit_id"] in {a.commune, a.village} for e in audit)


def test_a_province_user_reaches_every_commune(perm_world: PermWorld) -> None:
    w = perm_world
    a, b = _orgs(w)
    w.user(w.province, role="technician")
    w.admin(
        "POST",
        "/users",
        {
            "username": "tinh-duyet",
            "password": PASSWORD,
            "role": "approver",
            "org_unit_id": w.province,
        },
        expect=201,
    )
    tech = {"Authorization": f"Bearer {w.sign_in(f'u{w.counter}')}"}
    devices = {d["id"] for d in _get(w, "/devices", tech)["items"]}
    assert {a.device, b.device} <= devices
    r = w.client.post(f"/api/v1/devices/{b.device}/commands", json={"name": "resync"}, headers=tech)
    assert r.status_code == 202, r.text
    approver = {"Authorization": f"Bearer {w.sign_in('tinh-duyet')}"}
    for org in (a, b):
        pid = w.programme(org, status="submitted")
        r = w.client.post(f"/api/v1/programmes/{pid}/approve", json={}, headers=approver)
        assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    # ... while the commune approver cannot even see commune B's submission.
    pid = w.programme(b, status="submitted")
    r = w.client.post(f"/api/v1/programmes/{pid}/approve", json={}, headers=w.headers("approver"))
    assert r.status_code == 404


def test_clips_are_shared_down_the_tree_but_deleted_only_by_their_owners(
    perm_world: PermWorld,
) -> None:
    w = perm_world
    a, b = _orgs(w)
    provincial = w.db_clip(w.province)
    system_wide = w.db_clip(None)
    editor = w.headers("editor")
    clips = {c["id"] for c in _get(w, "/clips", editor, limit=500)["items"]}
    assert {provincial, system_wide, a.clip} <= clips and b.clip not in clips
    # An own programme may play a provincial clip.
    zone = w.zone(a.village, [])
    body = {
        "title": "Tin tỉnh",
        "clip_ids": [provincial],
        "zone_ids": [zone],
        "start": w.start_at(),
    }
    assert w.client.post("/api/v1/programmes", json=body, headers=editor).status_code == 201
    for clip in (provincial, system_wide):
        r = w.client.delete(f"/api/v1/clips/{clip}", headers=editor)
        assert r.status_code == 403 and "shared" in r.json()["detail"]
    # The same audio as a foreign commune's clip: refused without naming that clip.
    b_editor = w.user(b.commune, role="editor")
    b_headers = {"Authorization": f"Bearer {w.sign_in(f'u{w.counter}')}"}
    assert b_editor
    wav = tone_wav(1.0, 987.0)
    r = w.client.post(
        "/api/v1/clips",
        headers=b_headers,
        data={"title": "Bí mật của xã B"},
        files={"file": ("b.wav", wav, "audio/wav")},
    )
    assert r.status_code == 201, r.text
    r = w.client.post(
        "/api/v1/clips",
        headers=editor,
        data={"title": "Của xã A"},
        files={"file": ("a.wav", wav, "audio/wav")},
    )
    assert r.status_code == 409 and "Bí mật" not in r.text


def test_emergencies_need_the_flag_and_operators_create_nothing_else(perm_world: PermWorld) -> None:
    w = perm_world
    a, _b = _orgs(w)
    zone = w.zone(a.village, [a.device])
    emergency = {
        "title": "Bão số 3",
        "priority": "emergency",
        "approve_now": True,
        "clip_ids": [a.clip],
        "zone_ids": [zone],
        "start": w.start_at(),
    }
    r = w.client.post("/api/v1/programmes", json=emergency, headers=w.headers("operator"))
    assert r.status_code == 201 and r.json()["status"] == "approved", r.text
    pid = r.json()["id"]
    draft = {**emergency, "priority": "normal", "approve_now": False, "start": w.start_at()}
    r = w.client.post("/api/v1/programmes", json=draft, headers=w.headers("operator"))
    assert r.status_code == 403 and "emergency" in r.json()["detail"]
    w.user(a.commune, role="operator", can_emergency=False)
    plain = {"Authorization": f"Bearer {w.sign_in(f'u{w.counter}')}"}
    r = w.client.post(
        "/api/v1/programmes", json={**emergency, "start": w.start_at()}, headers=plain
    )
    assert r.status_code == 403 and "can_emergency" in r.json()["detail"]
    r = w.client.post(
        "/api/v1/programmes", json={**emergency, "start": w.start_at()}, headers=w.headers("editor")
    )
    assert r.status_code == 403
    # Operators cancel emergencies only; editors cancel what is not approved yet.
    normal = w.programme(a, status="approved")
    r = w.client.post(f"/api/v1/programmes/{normal}/cancel", json={}, headers=w.headers("operator"))
    assert r.status_code == 403
    r = w.client.post(f"/api/v1/programmes/{normal}/cancel", json={}, headers=w.headers("editor"))
    assert r.status_code == 403
    r = w.client.post(
        f"/api/v1/programmes/{pid}/cancel",
        json={"reason": "Bão tan"},
        headers=w.headers("operator"),
    )
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    flags = _get(w, "/users/me", w.headers("operator"))
    assert flags["may_run_emergency"] is True and "programmes:create" in flags["permissions"]


def test_deactivation_and_password_reset_end_every_token_at_once(perm_world: PermWorld) -> None:
    w = perm_world
    a, _b = _orgs(w)
    uid = w.user(a.commune, role="viewer")
    name = f"u{w.counter}"
    first, second = w.sign_in(name), w.sign_in(name)
    admin = w.headers("admin")
    r = w.client.post(f"/api/v1/users/{uid}/deactivate", headers=admin)
    assert r.status_code == 200 and r.json()["is_active"] is False
    for token in (first, second):
        r = w.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
    r = w.client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
    assert r.status_code == 401
    assert w.client.post(f"/api/v1/users/{uid}/activate", headers=admin).status_code == 200
    r = w.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {first}"})
    assert r.status_code == 401  # reactivation does not revive old tokens
    token = w.sign_in(name)
    r = w.client.post(
        f"/api/v1/users/{uid}/password", json={"password": "mat-khau-moi-2"}, headers=admin
    )
    assert r.status_code == 204
    r = w.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert w.sign_in(name, "mat-khau-moi-2")
    # A role change also ends the user's sessions: new rights start with a new sign-in.
    token = w.sign_in(name, "mat-khau-moi-2")
    r = w.client.patch(f"/api/v1/users/{uid}", json={"role": "editor"}, headers=admin)
    assert r.status_code == 200 and r.json()["role"] == "editor"
    r = w.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


def test_expired_and_revoked_tokens_are_refused(perm_world: PermWorld) -> None:
    w = perm_world
    headers = w.headers("viewer")
    assert w.client.get("/api/v1/users/me", headers=headers).status_code == 200
    with w.stack.session() as db:
        db.execute(update(AuthToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert w.client.get("/api/v1/users/me", headers=headers).status_code == 401
    token = w.sign_in("viewer-a")
    h = {"Authorization": f"Bearer {token}"}
    assert w.client.post("/api/v1/auth/logout", headers=h).status_code == 204
    assert w.client.get("/api/v1/users/me", headers=h).status_code == 401


def test_an_org_scoped_admin_stays_inside_the_subtree(perm_world: PermWorld) -> None:
    w = perm_world
    a, b = _orgs(w)
    admin = w.headers("admin")
    body = {"username": "toan-quyen", "password": PASSWORD, "role": "admin"}
    r = w.client.post("/api/v1/users", json=body, headers=admin)  # no org unit = everything
    assert r.status_code == 422
    r = w.client.post("/api/v1/users", json={**body, "org_unit_id": b.commune}, headers=admin)
    assert r.status_code == 422 and "does not exist" in r.json()["detail"]
    r = w.client.post("/api/v1/users", json={**body, "org_unit_id": a.village}, headers=admin)
    assert r.status_code == 201
    me = w.user_ids["admin"]
    r = w.client.post(f"/api/v1/users/{me}/deactivate", headers=admin)
    assert r.status_code == 409
    r = w.client.post(
        "/api/v1/org-units", json={"name": "Tỉnh Mới", "kind": "province"}, headers=admin
    )
    assert r.status_code == 422
    r = w.client.patch(
        f"/api/v1/org-units/{a.commune}", json={"parent_id": b.commune}, headers=admin
    )
    assert r.status_code == 422


def test_failed_sign_ins_are_limited_per_username_and_address(perm_world: PermWorld) -> None:
    w = perm_world
    for _ in range(5):
        r = w.client.post("/api/v1/auth/token", data={"username": "viewer-a", "password": "sai"})
        assert r.status_code == 401
    r = w.client.post("/api/v1/auth/token", data={"username": "viewer-a", "password": PASSWORD})
    assert r.status_code == 429
    assert "Đăng nhập sai quá nhiều lần" in r.json()["detail"]
    assert "Too many failed sign-ins" in r.json()["detail"]
    assert 1 <= int(r.headers["Retry-After"]) <= 300
    # Another user from the same address is not held back.
    assert w.sign_in("editor-a")
