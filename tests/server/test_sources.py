"""Outside sources: keys shown once, signing in with one, rotation, revocation, audit, limits.

A running server on real SQLite (and PostgreSQL when configured). Province P with communes A
and B; commune A's administrator registers the sources. No bulletin route is relied on: two
probe routes declaring bulletins:read and bulletins:send stand in for them, so the sign-in
path and the permission check are what is tested.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from loa_testkit.stack import Stack
from server.access.actor import Actor, load_actor
from server.access.deps import allow
from server.access.policy import BULLETINS_READ, BULLETINS_SEND, ROLE_GRANTS
from server.audit.models import AuditEntry
from server.sources import service
from server.sources.models import Source
from server.users.models import User
from tests.server.test_console import sign_in as console_sign_in
from tests.server.test_permissions_fixtures import PASSWORD, PermWorld

Reader = Annotated[Actor, allow(BULLETINS_READ)]
Sender = Annotated[Actor, allow(BULLETINS_SEND)]
probe = APIRouter(prefix="/api/v1/probe")


@probe.get("/read")
def probe_read(actor: Reader) -> dict[str, Any]:
    """Who signed in, through a bulletins:read route."""
    return {"user_id": actor.user.id, "role": actor.role, "org_ids": sorted(actor.org_ids or [])}


@probe.post("/send")
def probe_send(actor: Sender) -> dict[str, Any]:
    """Who signed in, through a bulletins:send route that writes (POST)."""
    return {"user_id": actor.user.id, "role": actor.role}


@dataclass
class World:
    """The API, commune A's admin (bearer headers) and the communes' ids."""

    w: PermWorld
    a: int
    b: int
    village_a: int
    admin_a: dict[str, str]

    @property
    def client(self) -> Any:
        """The HTTP client."""
        return self.w.client

    def create(self, expect: int = 201, **fields: Any) -> Any:
        """POST /sources as commune A's admin."""
        body = {"name": "Sở Nông nghiệp", "org_unit_id": self.a, **fields}
        r = self.client.post("/api/v1/sources", json=body, headers=self.admin_a)
        assert r.status_code == expect, r.text
        return r.json()

    def call(self, method: str, path: str, key: str, **kw: Any) -> Any:
        """A request signed with a source key."""
        headers = {"Authorization": f"Bearer {key}"}
        return self.client.request(method, f"/api/v1{path}", headers=headers, **kw)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """A request as commune A's admin."""
        return self.client.request(method, f"/api/v1{path}", json=body, headers=self.admin_a)


@pytest.fixture
def world(api: Stack) -> Iterator[World]:
    api.app.include_router(probe)
    w = PermWorld(stack=api)
    w.province = int(
        w.admin("POST", "/org-units", {"name": "Tỉnh Thử", "kind": "province"}, expect=201)["id"]
    )
    a, b = w.org_unit(w.province, kind="commune"), w.org_unit(w.province, kind="commune")
    village = w.org_unit(a)
    body = {"username": "admin-a", "password": PASSWORD, "role": "admin", "org_unit_id": a}
    w.admin("POST", "/users", body, expect=201)
    headers = {"Authorization": f"Bearer {w.sign_in('admin-a')}"}
    yield World(w, a, b, village, headers)


def _db(stack: Stack) -> AbstractContextManager[Session]:
    """A session on the app's engine (Stack.session is untyped)."""
    return stack.session()  # type: ignore[no-untyped-call,no-any-return]


def _audit_rows(stack: Stack) -> list[AuditEntry]:
    with _db(stack) as db:
        rows = list(db.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        db.expunge_all()
        return rows


def _key_uses(stack: Stack) -> list[AuditEntry]:
    return [e for e in _audit_rows(stack) if e.action == "source.key_used"]


def test_create_returns_the_key_once_and_the_key_signs_in_as_its_source(world: World) -> None:
    out = world.create(max_level="priority", trusted_levels=["normal"])
    key, source = out["key"], out["source"]
    assert re.fullmatch(r"loasrc_[A-Za-z0-9_-]{43}", key), key
    assert key.startswith(source["key_hint"]) and len(source["key_hint"]) == len("loasrc_") + 4
    assert source["max_level"] == "priority" and source["trusted_levels"] == ["normal"]
    assert source["org_unit_id"] == world.a and not source["revoked"]
    # Never again: not in the list, not in the source, not stored in the clear.
    sid = source["id"]
    for path in ("/sources", f"/sources/{sid}"):
        r = world.admin("GET", path)
        assert r.status_code == 200 and key not in r.text and "key_hash" not in r.text
        assert source["key_hint"] in r.text
    with _db(world.w.stack) as db:
        row = db.get(Source, sid)
        assert row is not None and row.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert row.last_used_at is None
        user = db.get(User, row.user_id)
        assert user is not None and user.role == "source" and user.org_unit_id == world.a
        assert user.username.startswith(f"source-{sid}-") and key not in user.password_hash

    r = world.call("GET", "/probe/read", key)
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "source" and r.json()["user_id"] == source["user_id"]
    # Its reach is its org unit's subtree, as for a person of that unit.
    assert set(r.json()["org_ids"]) == {world.a, world.village_a}
    r = world.call("POST", "/probe/send", key)
    assert r.status_code == 200 and r.json()["role"] == "source", r.text
    # Anything else is refused by the ordinary permission check.
    for method, path in (
        ("GET", "/users/me"),  # session: a source has no console or account
        ("GET", "/devices"),
        ("GET", "/sources"),
        ("POST", f"/sources/{sid}/rotate"),
    ):
        r = world.call(method, path, key)
        assert r.status_code == 403, (path, r.text)
        assert "(source)" in r.json()["detail"]
    with _db(world.w.stack) as db:
        row = db.get(Source, sid)
        assert row is not None and row.last_used_at is not None and row.key_hint in key
    # Every use is in the audit log, refused ones included, with method and path.
    uses = [(e.details["method"], e.details["path"], e.object_id) for e in _key_uses(world.w.stack)]
    assert uses == [
        ("GET", "/api/v1/probe/read", str(sid)),
        ("POST", "/api/v1/probe/send", str(sid)),
        ("GET", "/api/v1/users/me", str(sid)),
        ("GET", "/api/v1/devices", str(sid)),
        ("GET", "/api/v1/sources", str(sid)),
        ("POST", f"/api/v1/sources/{sid}/rotate", str(sid)),
    ]
    # A source key in the console's cookie is not a sign-in.
    world.client.cookies.set("loa_session", key)
    try:
        assert world.client.get("/api/v1/probe/read").status_code == 401
    finally:
        world.client.cookies.clear()


def test_a_rotated_away_or_revoked_key_is_refused_at_once(world: World) -> None:
    out = world.create(max_level="emergency")
    sid, first = out["source"]["id"], out["key"]
    assert world.call("GET", "/probe/read", first).status_code == 200
    r = world.admin("POST", f"/sources/{sid}/rotate")
    assert r.status_code == 200, r.text
    second = r.json()["key"]
    assert second != first and r.json()["source"]["rotated_at"] is not None
    assert second.startswith(r.json()["source"]["key_hint"])
    r = world.call("GET", "/probe/read", first)
    assert r.status_code == 401 and "Unknown source key" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert world.call("GET", "/probe/read", second).status_code == 200

    r = world.admin("POST", f"/sources/{sid}/revoke")
    assert r.status_code == 200 and r.json()["revoked"] and r.json()["revoked_at"], r.text
    r = world.call("POST", "/probe/send", second)
    assert r.status_code == 401 and "This source key was revoked" in r.json()["detail"]
    r = world.admin("POST", f"/sources/{sid}/rotate")
    assert r.status_code == 409 and "was revoked" in r.json()["detail"]
    r = world.admin("POST", f"/sources/{sid}/revoke")
    assert r.status_code == 409 and "already revoked" in r.json()["detail"]
    assert world.call("GET", "/probe/read", second).status_code == 401  # the 409 revived nothing
    actions = [e.action for e in _audit_rows(world.w.stack) if e.object_type == "source"]
    assert [a for a in actions if a != "source.key_used"] == [
        "source.create",
        "source.rotate",
        "source.revoke",
        "source.key_refused",  # the revoked key's two attempts
        "source.key_refused",
    ]


def test_bad_input_is_refused_with_a_sentence_and_creates_nothing(world: World) -> None:
    def counts() -> tuple[int, int]:
        with _db(world.w.stack) as db:
            return len(list(db.scalars(select(Source.id)))), len(list(db.scalars(select(User.id))))

    before = counts()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"org_unit_id": 2_000_000_000}, "Org unit 2000000000 does not exist."),
        ({"org_unit_id": world.b}, f"Org unit {world.b} does not exist."),  # outside reach
        ({"name": "   "}, "Give the source a name"),
        (
            {"max_level": "normal", "trusted_levels": ["priority", "emergency"]},
            "Trusted levels must not be above the source's highest level (normal): "
            "priority, emergency.",
        ),
    ]
    for fields, detail in cases:
        r = world.create(expect=422, **fields)
        assert detail in r["detail"], r
    r = world.create(expect=422, max_level="urgent")
    assert isinstance(r["detail"], str) and r["detail"]
    assert counts() == before

    out = world.create(max_level="priority", trusted_levels=["normal", "priority"])
    sid = out["source"]["id"]
    r = world.admin("PATCH", f"/sources/{sid}", {"max_level": "normal"})
    assert r.status_code == 422 and "(normal): priority" in r.json()["detail"], r.text
    r = world.admin("PATCH", f"/sources/{sid}", {"name": ""})
    assert r.status_code == 422 and "Give the source a name" in r.json()["detail"]
    r = world.admin("PATCH", f"/sources/{sid}", {"max_level": "normal", "trusted_levels": []})
    assert r.status_code == 200 and r.json()["max_level"] == "normal", r.text
    assert r.json()["trusted_levels"] == []
    r = world.admin("PATCH", f"/sources/{sid}", {"name": "  Ban Chỉ huy  PCTT  "})
    assert r.status_code == 200 and r.json()["name"] == "Ban Chỉ huy PCTT"

    # A source of commune B is, for commune A's admin, a source that does not exist.
    foreign = world.w.admin(
        "POST", "/sources", {"name": "Sở B", "org_unit_id": world.b}, expect=201
    )["source"]["id"]
    for method, path in (
        ("GET", f"/sources/{foreign}"),
        ("PATCH", f"/sources/{foreign}"),
        ("POST", f"/sources/{foreign}/rotate"),
        ("POST", f"/sources/{foreign}/revoke"),
    ):
        r = world.admin(method, path, {"name": "x"} if method == "PATCH" else None)
        assert r.status_code == 404 and r.json()["detail"] == f"Source {foreign} does not exist."
    assert foreign not in [s["id"] for s in world.admin("GET", "/sources").json()]
    assert {s["id"] for s in world.w.admin("GET", "/sources")} >= {sid, foreign}


def test_the_key_and_its_hash_never_reach_the_audit_log_or_the_logs(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    out = world.create(max_level="emergency", trusted_levels=["emergency"])
    sid, first = out["source"]["id"], out["key"]
    world.call("GET", "/probe/read", first)
    world.call("GET", "/devices", first)
    second = world.admin("POST", f"/sources/{sid}/rotate").json()["key"]
    world.call("POST", "/probe/send", second)
    world.call("POST", "/probe/send", first)
    world.admin("PATCH", f"/sources/{sid}", {"name": "Ban PCTT tỉnh"})
    world.admin("POST", f"/sources/{sid}/revoke")
    world.call("GET", "/probe/read", second)
    secrets = {first, second}
    secrets |= {hashlib.sha256(k.encode()).hexdigest() for k in (first, second)}
    secrets |= {k[len("loasrc_") :] for k in (first, second)}  # the random part alone
    rows = _audit_rows(world.w.stack)
    assert {"source.create", "source.rotate", "source.update", "source.revoke"} <= {
        e.action for e in rows
    }
    assert len(_key_uses(world.w.stack)) == 3  # an unknown or revoked key signs nothing in
    refused = [e for e in rows if e.action == "source.key_refused"]
    assert [(e.details["reason"], e.details["path"]) for e in refused] == [
        ("revoked", "/api/v1/probe/read")  # the rotated-away key names no source
    ]
    dumped = [f"{e.summary} {json.dumps(e.details)}" for e in rows]
    assert not [d for d in dumped for s in secrets if s in d]
    listing = world.admin("GET", "/audit?limit=1000").text
    assert "source.key_used" in listing and not [s for s in secrets if s in listing]
    assert caplog.records, "nothing was logged: the capture is not working"
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert not [s for s in secrets if s in logged]


def test_service_users_are_never_people(world: World) -> None:
    out = world.create()
    uid, key = out["source"]["user_id"], out["key"]
    with _db(world.w.stack) as db:
        user = db.get(User, uid)
        assert user is not None
        username = user.username
    for headers in (world.admin_a, world.w.stack.headers):  # commune admin, global admin
        listed = world.client.get("/api/v1/users", headers=headers)
        assert listed.status_code == 200 and "admin-a" in listed.text
        assert username not in listed.text and uid not in [u["id"] for u in listed.json()]
    missing = f"User {uid} does not exist."
    for method, path, body in (
        ("GET", f"/users/{uid}", None),
        ("PATCH", f"/users/{uid}", {"role": "admin"}),
        ("POST", f"/users/{uid}/password", {"password": "mat-khau-moi-1"}),
        ("POST", f"/users/{uid}/deactivate", None),
        ("POST", f"/users/{uid}/activate", None),
    ):
        r = world.admin(method, path, body)
        assert r.status_code == 404 and r.json()["detail"] == missing, (path, r.text)
    r = world.admin(
        "POST",
        "/users",
        {"username": "nguoi-gia", "password": PASSWORD, "role": "source", "org_unit_id": world.a},
    )
    assert r.status_code == 422 and "unknown role 'source'" in r.json()["detail"], r.text
    # No password signs a service user in: not a guess, not its key, not an empty one.
    for password in ("mat-khau-thu-1", key, "!no-password", "x"):
        r = world.client.post(
            "/api/v1/auth/token", data={"username": username, "password": password}
        )
        assert r.status_code == 401 and r.json()["detail"] == "Wrong username or password."
    # The console's Users page lists people only.
    browser = console_sign_in(world.w, "admin-a")
    page = browser.get("/users")
    assert page.status_code == 200 and "admin-a" in page.text and username not in page.text
    assert world.call("GET", "/probe/read", key).status_code == 200  # the key still works


def test_limits_for_sources_and_people(world: World) -> None:
    out = world.create(max_level="priority", trusted_levels=["normal"])
    sid, uid = out["source"]["id"], out["source"]["user_id"]
    with _db(world.w.stack) as db:
        source_user = db.get(User, uid)
        person = db.scalar(select(User).where(User.username == "admin-a"))
        assert source_user is not None and person is not None
        as_source = load_actor(db, user=source_user, ip="192.0.2.1", via_cookie=False)
        as_person = load_actor(db, user=person, ip="192.0.2.1", via_cookie=False)
        limits = service.limits_for(db, actor=as_source)
        assert service.limits_for(db, actor=as_person) is None
    assert limits == service.SourceLimits(sid, "Sở Nông nghiệp", "priority", frozenset({"normal"}))
    assert [service.allows_level(limits, lv) for lv in ("normal", "priority", "emergency")] == [
        True,
        True,
        False,
    ]
    assert not service.allows_level(limits, "urgent")
    assert service.allows_level(None, "emergency")  # a person: the role decides, not this
    assert service.skips_approval(limits, "normal")
    assert not service.skips_approval(limits, "priority")
    assert not service.skips_approval(None, "normal")
    # A change by the admin is what the next bulletin meets.
    world.admin("PATCH", f"/sources/{sid}", {"max_level": "emergency", "trusted_levels": []})
    with _db(world.w.stack) as db:
        limits = service.limits_for(db, actor=as_source)
    assert limits is not None and limits.max_level == "emergency" and not limits.trusted_levels


def test_a_source_key_reads_the_real_bulletin_list(world: World) -> None:
    """Beyond the probes: GET /bulletins (bulletins:read) answers the key with an empty page."""
    key = world.create(max_level="priority")["key"]
    r = world.call("GET", "/bulletins", key)
    assert r.status_code == 200 and r.json()["total"] == 0, r.text


def _scoped_operations(app: Any) -> list[tuple[str, str, str, bool]]:
    """(method, path, permission, takes a body) of every signed-in /api/v1 operation."""
    out = []
    for path, ops in app.openapi()["paths"].items():
        for method, op in ops.items():
            scopes = [
                s for req in op.get("security") or [] for s in req.get("OAuth2PasswordBearer", [])
            ]
            if path.startswith("/api/v1/") and scopes:
                out.append((method.upper(), path, scopes[0], "requestBody" in op))
    return out


def test_a_source_key_is_refused_on_every_route_but_the_bulletin_ones(world: World) -> None:
    key = world.create(max_level="emergency")["key"]
    grants = ROLE_GRANTS["source"]
    scoped = _scoped_operations(world.w.stack.app)
    refused = [op for op in scoped if op[2] not in grants]
    assert len(refused) >= 55 and ("GET", "/api/v1/probe/read", BULLETINS_READ, False) in scoped
    wrong = []
    for method, template, _permission, has_body in refused:
        path = re.sub(r"\{[^}]+\}", "1", template).removeprefix("/api/v1")
        r = world.call(method, path, key, json={} if has_body else None)
        if r.status_code != 403:
            wrong.append(f"{method} {template}: {r.status_code} {r.text[:120]}")
    assert not wrong, "\n".join(wrong)
    assert len(_key_uses(world.w.stack)) == len(refused)
