"""The audit log: who did what, when, from where, written in the change's own transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.server.test_permissions_fixtures import PermWorld


def _audit(w: PermWorld, **params: Any) -> dict[str, Any]:
    r = w.client.get("/api/v1/audit", params=params, headers=w.stack.headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_the_approval_workflow_is_recorded_with_who_and_where(perm_world: PermWorld) -> None:
    w = perm_world
    assert w.a is not None
    zone = w.zone(w.a.village, [w.a.device])
    body = {
        "title": "Lịch tiêm chủng",
        "clip_ids": [w.a.clip],
        "zone_ids": [zone],
        "start": w.start_at(),
    }
    editor, approver = w.headers("editor"), w.headers("approver")
    pid = w.client.post("/api/v1/programmes", json=body, headers=editor).json()["id"]
    assert w.client.post(f"/api/v1/programmes/{pid}/submit", headers=editor).status_code == 200
    r = w.client.post(
        f"/api/v1/programmes/{pid}/approve", json={"reason": "Đồng ý"}, headers=approver
    )
    assert r.status_code == 200
    entries = _audit(w, object_type="programme", object_id=str(pid))["items"]
    assert [e["action"] for e in reversed(entries)] == [
        "programme.create",
        "programme.submit",
        "programme.approve",
    ]
    approve = entries[0]
    assert approve["username"] == "approver-a" and approve["user_id"] == w.user_ids["approver"]
    assert approve["ip"] == "testclient"  # the peer address of the request
    assert approve["org_unit_id"] == w.a.commune
    assert approve["details"]["note"] == "Đồng ý" and approve["details"]["zone_ids"] == [zone]
    assert datetime.fromisoformat(approve["at"]) > datetime.now(UTC) - timedelta(minutes=1)
    emergency = {**body, "priority": "emergency", "approve_now": True, "start": w.start_at()}
    r = w.client.post("/api/v1/programmes", json=emergency, headers=w.headers("operator"))
    assert r.status_code == 201
    found = _audit(w, action="programme.emergency")["items"]
    assert [(e["object_id"], e["username"]) for e in found] == [(str(r.json()["id"]), "operator-a")]


def test_a_refused_change_leaves_no_entry(perm_world: PermWorld) -> None:
    w = perm_world
    assert w.a is not None
    w.programme(w.a)  # uses commune A's clip, so the clip cannot be deleted
    before = _audit(w, action="clip.delete")["total"]
    r = w.client.delete(f"/api/v1/clips/{w.a.clip}", headers=w.headers("editor"))
    assert r.status_code == 409
    assert _audit(w, action="clip.delete")["total"] == before == 0
    # The same delete once nothing uses the clip: recorded, with the clip's title.
    clip = w.db_clip(w.a.commune)
    assert w.client.delete(f"/api/v1/clips/{clip}", headers=w.headers("editor")).status_code == 204
    (entry,) = _audit(w, action="clip.delete")["items"]
    assert entry["object_id"] == str(clip) and entry["summary"].startswith("Bản tin")


def test_sign_ins_commands_and_user_changes_are_recorded(perm_world: PermWorld) -> None:
    w = perm_world
    assert w.a is not None
    r = w.client.post("/api/v1/auth/token", data={"username": "editor-a", "password": "nope"})
    assert r.status_code == 401
    failed = _audit(w, action="auth.login_failed")["items"]
    assert [(e["username"], e["user_id"]) for e in failed] == [("editor-a", None)]
    logins = _audit(w, action="auth.login", user_id=w.user_ids["editor"])["items"]
    assert len(logins) == 1
    r = w.client.post(
        f"/api/v1/devices/{w.a.device}/commands",
        json={"name": "resync"},
        headers=w.headers("technician"),
    )
    assert r.status_code == 202
    (cmd,) = _audit(w, action="device.command")["items"]
    assert cmd["details"]["command_id"] == r.json()["id"] and cmd["username"] == "technician-a"
    uid = w.user(w.a.commune)
    w.client.post(f"/api/v1/users/{uid}/deactivate", headers=w.headers("admin"))
    (deact,) = _audit(w, action="user.deactivate")["items"]
    assert deact["object_id"] == str(uid) and deact["username"] == "admin-a"


def test_filters_pagination_and_who_may_read(perm_world: PermWorld) -> None:
    w = perm_world
    assert w.a is not None
    for _ in range(3):
        w.programme(w.a)
    family = _audit(w, action="programme.", limit=2)
    assert family["total"] == 3 and len(family["items"]) == 2
    rest = _audit(w, action="programme.", limit=2, offset=2)
    assert len(rest["items"]) == 1
    ids = [e["id"] for e in family["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert _audit(w, since=future)["total"] == 0
    assert _audit(w, until=future)["total"] > 0
    r = w.client.get(
        "/api/v1/audit", params={"since": "2031-01-01T00:00:00"}, headers=w.stack.headers
    )
    assert r.status_code == 422 and "time zone" in r.json()["detail"]
    for role in ("editor", "approver", "operator", "technician", "viewer"):
        assert w.client.get("/api/v1/audit", headers=w.headers(role)).status_code == 403
