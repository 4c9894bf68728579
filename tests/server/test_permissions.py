"""Every /api/v1 operation × every role × own and foreign objects, generated from OpenAPI.

Each operation must declare exactly one permission (its OAuth2 scope). For each role the
test calls it on commune A's objects (the user's own) and, one reference at a time, on
commune B's (foreign): a role without the permission gets 403 everywhere; a role with it
succeeds on its own objects and gets 404 (422 for ids inside a body) on foreign ones, with
nothing of the foreign object in the answer. A new route fails here until its path
parameters, query ids and body are described below.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from server.access import policy
from server.feedback import attachments
from server.feedback.models import FeedbackCase, FeedbackCategory
from server.users.models import ROLES, SERVICE_ROLES
from tests.server.test_permissions_fixtures import (
    PASSWORD,
    Org,
    PermWorld,
    cap_alert,
    tone_wav,
)

PUBLIC = {
    ("POST", "/api/v1/auth/token"),
    ("GET", "/api/v1/broker/ca.pem"),
    # CAP out: e-boards, apps and neighbouring systems poll it without an account; it carries
    # only what the loudspeakers say in public (tests/server/test_cap_intake.py).
    ("GET", "/api/v1/cap/feed.atom"),
    # Citizen feedback: a citizen submits and follows a case by its code without an account
    # (tests/server/test_feedback_public.py).
    ("POST", "/api/v1/public/feedback"),
    ("GET", "/api/v1/public/feedback/{tracking_code}"),
}
# Query parameters ending in _id that name no object (the audit log's free-text object id).
NOT_OBJECTS = {"object_id"}
# Path and query parameters that name an object, and the kind of object they name.
ID_KINDS = {
    "unit_id": "org_unit",
    "parent_id": "org_unit",
    "org_unit_id": "org_unit",
    "zone_id": "zone",
    "device_id": "device",
    "clip_id": "clip",
    "programme_id": "programme",
    "user_id": "user",
    "session_id": "live_session",
    "bulletin_id": "bulletin",
    "source_id": "source",
    "delivery_id": "delivery",
    "relay_source_id": "relay_source",
    "case_id": "feedback_case",
    "category_id": "feedback_category",
}
SOURCE = "source"  # an outside system's key (server/sources): its service user's role
SOURCE_MAY = {
    ("POST", "/api/v1/bulletins"),
    ("POST", "/api/v1/cap"),
    ("POST", "/api/v1/bulletins/{bulletin_id}/cancel"),  # its own, as a CAP Cancel would
    ("GET", "/api/v1/bulletins"),
    ("GET", "/api/v1/bulletins/{bulletin_id}"),
}
# Own calls that are expected to fail for a reason other than permissions.
OWN_NOT_2XX = {("POST", "/api/v1/users/me/password"): 422}  # the current password is wrong
SINCE, UNTIL = "2031-03-01T00:00:00Z", "2031-03-08T00:00:00Z"

Pick = Callable[[str], int]


@dataclass(frozen=True)
class Body:
    """A request body built from object ids: `kinds` are the references it holds."""

    kinds: tuple[str, ...]
    build: Callable[[PermWorld, Pick, str], Any]
    multipart: bool = False
    xml: bool = False  # build returns a CAP 1.2 document, posted as application/cap+xml


def _programme_body(w: PermWorld, pick: Pick, role: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": f"Tin {w.next()}",
        "clip_ids": [pick("clip")],
        "zone_ids": [pick("zone")],
        "start": w.start_at(),
        "org_unit_id": pick("org_unit"),
    }
    if not policy.may(role, policy.PROGRAMMES_EDIT):  # operators, approvers: emergencies only
        body.update(priority="emergency", approve_now=True)
    return body


BODIES: dict[tuple[str, str], Body] = {
    ("POST", "/api/v1/users/me/password"): Body(
        (), lambda w, p, r: {"current_password": "wrong-password", "new_password": "x" * 10}
    ),
    ("POST", "/api/v1/users"): Body(
        ("org_unit",),
        lambda w, p, r: {
            "username": f"new{w.next()}",
            "password": PASSWORD,
            "role": "viewer",
            "org_unit_id": p("org_unit"),
        },
    ),
    ("PATCH", "/api/v1/users/{user_id}"): Body(
        ("org_unit",), lambda w, p, r: {"full_name": "Nguyễn Văn Mới", "org_unit_id": p("org_unit")}
    ),
    ("POST", "/api/v1/users/{user_id}/password"): Body((), lambda w, p, r: {"password": "y" * 10}),
    ("POST", "/api/v1/org-units"): Body(
        ("org_unit",),
        lambda w, p, r: {"name": f"Thôn {w.next()}", "kind": "village", "parent_id": p("org_unit")},
    ),
    ("PATCH", "/api/v1/org-units/{unit_id}"): Body((), lambda w, p, r: {"name": "Thôn Đổi Tên"}),
    ("POST", "/api/v1/zones"): Body(
        ("org_unit", "device"),
        lambda w, p, r: {
            "org_unit_id": p("org_unit"),
            "name": f"Vùng {w.next()}",
            "device_ids": [p("device")],
        },
    ),
    ("PATCH", "/api/v1/zones/{zone_id}"): Body((), lambda w, p, r: {"description": "Chợ"}),
    ("PUT", "/api/v1/zones/{zone_id}/devices"): Body(
        ("device",), lambda w, p, r: {"device_ids": [p("device")]}
    ),
    ("POST", "/api/v1/devices"): Body(
        ("org_unit", "zone"),
        lambda w, p, r: {
            "uid": f"new-{w.next():04d}",
            "name": "Cụm mới",
            "org_unit_id": p("org_unit"),
            "firmware_profile": "sim",
            "zone_ids": [p("zone")],
        },
    ),
    ("PATCH", "/api/v1/devices/{device_id}"): Body(
        ("org_unit",), lambda w, p, r: {"location": "Nhà văn hoá", "org_unit_id": p("org_unit")}
    ),
    ("POST", "/api/v1/devices/{device_id}/commands"): Body(
        (), lambda w, p, r: {"name": "test_tone", "seconds": 1}
    ),
    ("POST", "/api/v1/devices/{device_id}/self-test"): Body(
        (), lambda w, p, r: {"volume": 20, "rebaseline": False}
    ),
    ("PATCH", "/api/v1/org-units/{unit_id}/selftest"): Body(
        (), lambda w, p, r: {"daily_at": "11:30", "volume": 30}
    ),
    ("POST", "/api/v1/clips"): Body((), lambda w, p, r: None, multipart=True),
    ("POST", "/api/v1/cap"): Body(
        ("org_unit",), lambda w, p, r: cap_alert(w, p("org_unit")), xml=True
    ),
    ("POST", "/api/v1/clips/tts"): Body(
        (), lambda w, p, r: {"text": f"Thông báo số {w.next()} của xã.", "title": "Thông báo"}
    ),
    ("POST", "/api/v1/clips/compose"): Body(
        ("clip",),
        lambda w, p, r: {
            "title": f"Ghép {w.next()}",
            "parts": [
                {"type": "silence", "ms": 50 + w.next()},
                {"type": "clip", "clip_id": p("clip")},
            ],
        },
    ),
    ("POST", "/api/v1/programmes"): Body(("org_unit", "zone", "clip"), _programme_body),
    ("POST", "/api/v1/programmes/check"): Body(
        ("org_unit", "zone", "clip"),
        lambda w, p, r: {
            "title": "Thử",
            "clip_ids": [p("clip")],
            "zone_ids": [p("zone")],
            "start": w.start_at(),
            "org_unit_id": p("org_unit"),
        },
    ),
    ("PATCH", "/api/v1/programmes/{programme_id}"): Body(
        ("zone", "clip"),
        lambda w, p, r: {"title": "Sửa tên", "zone_ids": [p("zone")], "clip_ids": [p("clip")]},
    ),
    ("POST", "/api/v1/programmes/{programme_id}/approve"): Body((), lambda w, p, r: {"reason": ""}),
    ("POST", "/api/v1/programmes/{programme_id}/reject"): Body(
        (), lambda w, p, r: {"reason": "Nội dung chưa đúng"}
    ),
    ("POST", "/api/v1/live"): Body(
        ("zone",), lambda w, p, r: {"source": "mic", "zone_ids": [p("zone")], "label": "Thử"}
    ),
    ("POST", "/api/v1/programmes/{programme_id}/cancel"): Body(
        (), lambda w, p, r: {"reason": "Hoãn"}
    ),
    ("POST", "/api/v1/bulletins"): Body(
        ("org_unit", "clip"),
        lambda w, p, r: {
            "title": f"Bản tin {w.next()}",
            "clip_ids": [p("clip")],
            "target_org_unit_ids": [p("org_unit")],
            "valid_until": w.bulletin_until(),
        },
    ),
    ("POST", "/api/v1/bulletins/{bulletin_id}/reject"): Body(
        (), lambda w, p, r: {"reason": "Nội dung chưa đúng"}
    ),
    ("POST", "/api/v1/bulletins/{bulletin_id}/accept"): Body(
        ("zone", "org_unit"),
        lambda w, p, r: {
            "start": w.start_at(),
            "zone_ids": [p("zone")],
            "org_unit_id": p("org_unit"),
        },
    ),
    ("POST", "/api/v1/bulletins/{bulletin_id}/decline"): Body(
        ("org_unit",),
        lambda w, p, r: {"reason": "Xã đã phát tin này", "org_unit_id": p("org_unit")},
    ),
    ("POST", "/api/v1/sources"): Body(
        ("org_unit",),
        lambda w, p, r: {
            "name": f"Sở {w.next()}",
            "org_unit_id": p("org_unit"),
            "max_level": "priority",
            "trusted_levels": ["normal"],
        },
    ),
    ("PATCH", "/api/v1/sources/{source_id}"): Body(
        (), lambda w, p, r: {"name": "Sở Đổi Tên", "max_level": "emergency"}
    ),
    ("POST", "/api/v1/relay-sources"): Body(
        ("org_unit",),
        lambda w, p, r: {
            "name": f"VOV {w.next()}",
            "url": "https://203.162.4.190/vov1",  # a public address: no DNS lookup needed
            "kind": "national",
            "org_unit_id": p("org_unit"),
        },
    ),
    ("PATCH", "/api/v1/relay-sources/{relay_source_id}"): Body(
        (), lambda w, p, r: {"name": f"Đài tỉnh {w.next()}", "enabled": False}
    ),
    ("PUT", "/api/v1/org-units/{unit_id}/slots"): Body(
        (), lambda w, p, r: {"slots": [{"start_time": "05:00", "weekdays": "123456"}]}
    ),
    ("POST", "/api/v1/bulletins/deliveries/{delivery_id}/position"): Body(
        (), lambda w, p, r: {"position": 0}
    ),
    ("POST", "/api/v1/feedback/{case_id}/assign"): Body(
        ("user",), lambda w, p, r: {"user_id": p("user"), "note": "Giao xử lý"}
    ),
    ("POST", "/api/v1/feedback/{case_id}/answer"): Body(
        (), lambda w, p, r: {"answer": "Xã đã xử lý.", "publish": True}
    ),
    ("POST", "/api/v1/feedback/{case_id}/forward"): Body(
        ("org_unit",), lambda w, p, r: {"org_unit_id": p("org_unit"), "note": "Chuyển thôn"}
    ),
    ("POST", "/api/v1/feedback/{case_id}/close"): Body((), lambda w, p, r: {"note": "Xong"}),
    ("POST", "/api/v1/feedback/categories"): Body(
        ("org_unit",),
        lambda w, p, r: {"org_unit_id": p("org_unit"), "name": f"Lĩnh vực {w.next()}"},
    ),
    ("PATCH", "/api/v1/feedback/categories/{category_id}"): Body(
        (), lambda w, p, r: {"name": f"Đổi tên {w.next()}", "due_days": 15}
    ),
}
# The programme a route acts on must be in a status where the action makes sense.
PROGRAMME_STATUS = {"approve": "submitted", "reject": "submitted"}
# Required query parameters that are not object ids.
QUERY_EXTRA = {
    "/api/v1/reports/plays": {"since": SINCE, "until": UNTIL},
    "/api/v1/reports/plays.csv": {"since": SINCE, "until": UNTIL},
    "/api/v1/reports/summary": {"period": "2031-03"},
}


@dataclass(frozen=True)
class Operation:
    """One OpenAPI operation and what it references."""

    method: str
    path: str
    permission: str
    path_kinds: dict[str, str]
    query_kinds: dict[str, str]
    required_query: frozenset[str]
    has_body: bool

    @property
    def key(self) -> tuple[str, str]:
        """(METHOD, path template)."""
        return (self.method, self.path)


def operations(app: Any) -> list[Operation]:
    """Every /api/v1 operation of the app, with its declared permission."""
    out: list[Operation] = []
    problems: list[str] = []
    for path, ops in app.openapi()["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, op in ops.items():
            key = (method.upper(), path)
            if key in PUBLIC:
                continue
            scopes = [
                s for req in op.get("security") or [] for s in req.get("OAuth2PasswordBearer", [])
            ]
            if len(scopes) != 1 or scopes[0] not in policy.PERMISSIONS:
                problems.append(f"{key} declares permissions {scopes}: use allow(PERMISSION)")
                continue
            params = op.get("parameters", [])
            path_kinds, query_kinds, required = {}, {}, set()
            for prm in params:
                name = prm["name"]
                if prm["in"] == "path":
                    if name not in ID_KINDS:
                        problems.append(f"{key}: path parameter {name} has no kind in ID_KINDS")
                        continue
                    path_kinds[name] = ID_KINDS[name]
                elif prm["in"] == "query":
                    if name in ID_KINDS:
                        query_kinds[name] = ID_KINDS[name]
                    elif name.endswith("_id") and name not in NOT_OBJECTS:
                        problems.append(f"{key}: query parameter {name} has no kind in ID_KINDS")
                    if prm.get("required"):
                        required.add(name)
            has_body = "requestBody" in op
            if has_body and key not in BODIES:
                problems.append(f"{key} takes a body: describe it in BODIES")
            out.append(
                Operation(
                    key[0], path, scopes[0], path_kinds, query_kinds, frozenset(required), has_body
                )
            )
    assert not problems, "\n".join(problems)
    return out


class Objects:
    """Own (commune A) and foreign (commune B) objects of each kind, fresh when needed."""

    def __init__(self, w: PermWorld) -> None:
        self.w = w
        assert w.a is not None and w.b is not None
        self.shared: dict[tuple[str, bool], int | str] = {}

    def org(self, foreign: bool) -> Org:
        """Commune B for foreign objects, A for own ones."""
        org = self.w.b if foreign else self.w.a
        assert org is not None
        return org

    def make(self, kind: str, *, foreign: bool, op: Operation, role: str) -> int | str:
        """A new object of `kind` for this call (so destructive calls never interfere)."""
        w, org = self.w, self.org(foreign)
        if kind == "org_unit":
            return w.org_unit(org.village)
        if kind == "zone":
            return w.zone(org.village, [w.device(org.village)])
        if kind == "device":
            return w.device(org.village)
        if kind == "clip":
            return w.db_clip(org.commune)
        if kind == "user":
            return w.user(org.commune)
        if kind == "delivery":  # a priority bulletin placed in the commune, not yet begun
            return w.priority_delivery(org)
        if kind == "source":
            body = {"name": f"Sở {w.next()}", "org_unit_id": org.commune}
            return int(w.admin("POST", "/sources", body, expect=201)["source"]["id"])
        if kind == "relay_source":
            body = {"name": f"VOV {w.next()}", "url": "http://203.162.4.190:8000/vov1",
                    "org_unit_id": org.commune}  # fmt: skip
            return int(w.admin("POST", "/relay-sources", body, expect=201)["id"])
        if kind in ("feedback_case", "feedback_category"):
            return _feedback_row(w, kind, org.commune)
        if kind == "bulletin" and role == SOURCE and not foreign:  # a source's own: it sent it
            return self.source_bulletin()
        if kind == "bulletin":  # the sender's actions act on one the commune sent
            sent = op.path.rsplit("/", 1)[-1] in ("approve", "reject", "cancel")
            return w.bulletin(org, sent=sent)
        if kind == "live_session":  # a microphone session to the org's zone, nobody speaking
            body = {"source": "mic", "zone_ids": [org.zone], "idle_timeout_s": 60}
            return str(w.admin("POST", "/live", body, expect=201)["id"])
        if kind == "programme":
            action = op.path.rsplit("/", 1)[-1]
            if action == "cancel" and role == "operator":
                return w.programme(org, status="approved", priority="emergency")
            return w.programme(org, status=PROGRAMME_STATUS.get(action, "draft"))
        raise AssertionError(f"no factory for {kind}")

    def source_bulletin(self) -> int:
        """A bulletin the source key sent to a village of commune A (awaiting approval)."""
        w, org = self.w, self.org(False)
        body = {
            "title": f"Tin nguồn {w.next()}",
            "clip_ids": [org.clip],
            "target_org_unit_ids": [org.village],
            "valid_until": w.bulletin_until(),
        }
        r = w.client.post("/api/v1/bulletins", json=body, headers=w.headers(SOURCE))
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def existing(self, kind: str, *, foreign: bool) -> int | str:
        """A standing object of `kind` (used in bodies and filters, never destroyed)."""
        org = self.org(foreign)
        standing = {
            "org_unit": org.village,
            "zone": org.zone,
            "device": org.device,
            "clip": org.clip,
        }
        if kind in standing:
            return standing[kind]
        if (kind, foreign) not in self.shared:
            self.shared[(kind, foreign)] = self.make(kind, foreign=foreign, op=_NO_OP, role="")
        return self.shared[(kind, foreign)]


_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082"
)


def _feedback_row(w: PermWorld, kind: str, unit: int) -> int:
    """A citizen's case (or a category) of the commune, straight in the database."""
    now = datetime.now(UTC)
    with w.stack.session() as db:  # type: ignore[no-untyped-call]
        row: FeedbackCase | FeedbackCategory
        if kind == "feedback_category":
            row = FeedbackCategory(org_unit_id=unit, name=f"Lĩnh vực {w.next()}", due_days=10)
        else:
            photo = attachments.store(
                _PNG, root=w.stack.settings.data_dir / "feedback", max_voice_s=60
            )
            row = FeedbackCase(
                tracking_code=f"PERM{w.next():06d}", org_unit_id=unit, received_by_unit_id=unit,
                content="Đèn đường hỏng", name="Nguyễn Văn A", phone="0912345678",
                due_at=now + timedelta(days=10), attachment_sha256=photo.sha256,
                attachment_type=photo.media_type, attachment_size=photo.size,
            )  # fmt: skip
        db.add(row)
        db.flush()
        return int(row.id)


_NO_OP = Operation("GET", "/", policy.SESSION, {}, {}, frozenset(), False)


def _fill(path: str, ids: dict[str, int | str]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: str(ids[m.group(1)]), path)


def _call(w: PermWorld, op: Operation, role: str, objects: Objects, foreign: str | None) -> Any:
    """Call op as role; `foreign` names the one reference made foreign ('path:x', 'body:kind')."""
    allowed = policy.may(role, op.permission)
    fresh = allowed and (op.method != "GET" or role == SOURCE)  # a source reads what it sent

    def pick(kind: str) -> int:
        found = objects.existing(kind, foreign=foreign == f"body:{kind}")
        assert isinstance(found, int)
        return found

    path_ids = {
        name: (
            objects.make(kind, foreign=foreign == f"path:{name}", op=op, role=role)
            if fresh
            else objects.existing(kind, foreign=foreign == f"path:{name}")
        )
        for name, kind in op.path_kinds.items()
    }
    params: dict[str, Any] = dict(QUERY_EXTRA.get(op.path, {}))
    for name, kind in op.query_kinds.items():
        if name in op.required_query or foreign == f"query:{name}":
            params[name] = objects.existing(kind, foreign=foreign == f"query:{name}")
    headers = w.headers(role)
    if op.key == ("POST", "/api/v1/auth/logout") and role != SOURCE:
        headers = {"Authorization": f"Bearer {w.sign_in(f'{role}-a')}"}  # keep the role's token
    url = _fill(op.path, path_ids)
    body = BODIES.get(op.key)
    if body is not None and body.multipart:
        files = {"file": (f"tone{w.next()}.wav", tone_wav(0.5, 300 + w.next()), "audio/wav")}
        return w.client.request(
            op.method,
            url,
            params=params,
            headers=headers,
            files=files,
            data={"title": "Bản tin sáng"},
        )
    if body is not None and body.xml:
        headers = headers | {"Content-Type": "application/cap+xml"}
        data = body.build(w, pick, role)
        return w.client.request(op.method, url, params=params, headers=headers, content=data)
    payload = body.build(w, pick, role) if body is not None else None
    return w.client.request(op.method, url, params=params, headers=headers, json=payload)


def _foreign_variants(op: Operation) -> list[str]:
    variants = [f"path:{n}" for n in op.path_kinds] + [f"query:{n}" for n in op.query_kinds]
    body = BODIES.get(op.key)
    return variants + [f"body:{k}" for k in (body.kinds if body else ())]


def test_every_role_is_in_the_grant_table_and_every_grant_exists() -> None:
    assert set(policy.ROLE_GRANTS) == set(ROLES) | set(SERVICE_ROLES)
    for role, grants in policy.ROLE_GRANTS.items():
        assert grants <= policy.PERMISSIONS, role
    # The table's intent, spelled out: a change to it must be deliberate.
    assert not policy.may("viewer", policy.CLIPS_WRITE)
    assert not policy.may("editor", policy.PROGRAMMES_APPROVE)
    assert not policy.may("technician", policy.PROGRAMMES_CREATE)
    assert not policy.may("operator", policy.DEVICES_COMMAND)
    assert policy.may("technician", policy.DEVICES_COMMAND)
    assert policy.may("approver", policy.PROGRAMMES_APPROVE)
    assert [r for r in ROLES if policy.may(r, policy.USERS_MANAGE)] == ["admin"]
    assert [r for r in ROLES if policy.may(r, policy.AUDIT_READ)] == ["admin"]
    assert [r for r in ROLES if policy.may(r, policy.RELAY_SOURCES_MANAGE)] == ["admin"]
    # Citizens' name and phone: the commune's feedback staff only, never technicians or viewers.
    assert [r for r in ROLES if policy.may(r, policy.FEEDBACK_HANDLE)] == ["admin", "operator"]
    assert not policy.may("technician", policy.FEEDBACK_READ)
    assert not policy.may("viewer", policy.FEEDBACK_READ)
    assert policy.may_run_emergency(role="operator", can_emergency=True)
    assert not policy.may_run_emergency(role="operator", can_emergency=False)
    assert not policy.may_run_emergency(role="editor", can_emergency=True)
    assert policy.may_run_emergency(role="admin", can_emergency=False)
    # A source key sends bulletins and reads their status, nothing else.
    assert policy.grants("source") == {policy.BULLETINS_SEND, policy.BULLETINS_READ}
    assert not policy.may_run_emergency(role="source", can_emergency=True)


def _source_key(w: PermWorld) -> str:
    """A source registered on commune A (normal and priority, none trusted); its key."""
    assert w.a is not None
    body = {"name": "Sở Thử", "org_unit_id": w.a.commune, "max_level": "priority"}
    return str(w.admin("POST", "/sources", body, expect=201)["key"])


def test_matrix_every_route_every_role_own_and_foreign(perm_world: PermWorld) -> None:
    w = perm_world
    ops = operations(w.stack.app)
    assert len(ops) >= 55
    objects = Objects(w)
    assert w.b is not None
    w.tokens[SOURCE] = _source_key(w)  # a source key signs in as the bearer, like a token
    foreign_names = [w.b.name, "Bình Minh"]
    failures: list[str] = []
    # What a source key may call, all else is 403: send, and read what it sent.
    assert {op.key for op in ops if policy.may(SOURCE, op.permission)} == SOURCE_MAY
    for op in ops:
        for role in (*ROLES, SOURCE):
            allowed = policy.may(role, op.permission)
            r = _call(w, op, role, objects, foreign=None)
            where = f"{op.method} {op.path} as {role} (own)"
            if not allowed:
                if r.status_code != 403:
                    failures.append(f"{where}: {r.status_code}, expected 403")
            elif op.key in OWN_NOT_2XX:
                if r.status_code != OWN_NOT_2XX[op.key]:
                    failures.append(f"{where}: {r.status_code} {r.text[:200]}")
            elif not 200 <= r.status_code < 300:
                failures.append(f"{where}: {r.status_code} {r.text[:200]}")
            for variant in _foreign_variants(op):
                r = _call(w, op, role, objects, foreign=variant)
                where = f"{op.method} {op.path} as {role} ({variant} foreign)"
                expected = (
                    {403} if not allowed else ({422, 404} if variant.startswith("body:") else {404})
                )
                if r.status_code not in expected:
                    failures.append(f"{where}: {r.status_code} {r.text[:200]}")
                elif any(name in r.text for name in foreign_names):
                    failures.append(f"{where}: the answer names the foreign commune")
    # A bulletin of the source's own commune that someone else sent is not its to read.
    other = objects.existing("bulletin", foreign=False)
    r = w.client.get(f"/api/v1/bulletins/{other}", headers=w.headers(SOURCE))
    if r.status_code != 404:
        failures.append(f"GET /api/v1/bulletins/{{id}} as source (another sender's): {r.text}")
    assert not failures, f"{len(failures)} problem(s):\n" + "\n".join(failures)
