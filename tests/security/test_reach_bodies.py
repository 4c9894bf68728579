"""A reference to another commune's object answers exactly like a reference to no object.

Generated from app.openapi() like the permission matrix (tests/server/test_permissions.py,
whose BODIES and objects it reuses): for every path id, query filter and request-body field
that names an object, a commune-A user gets the same status and the same detail (apart
from the id) for commune B's object as for an id that does not exist. POST /live is
covered for every source: zones, an org unit and (file) a clip of commune B.
"""

from __future__ import annotations

import re
from typing import Any

from tests.server.test_permissions import (
    BODIES,
    QUERY_EXTRA,
    Body,
    Objects,
    Operation,
    operations,
)
from tests.server.test_permissions_fixtures import Org, PermWorld

MISSING = 2_000_000_000  # inside every id bound, and no test creates that many objects
MISSING_SESSION = "0123456789ab"
# Body fields that name an object, and the kind of object (see test_permissions.ID_KINDS).
FIELD_KINDS = {
    "org_unit_id": "org_unit",
    "parent_id": "org_unit",
    "zone_id": "zone",
    "zone_ids": "zone",
    "device_id": "device",
    "device_ids": "device",
    "clip_id": "clip",
    "clip_ids": "clip",
    "user_id": "user",
    "programme_id": "programme",
    "target_org_unit_ids": "org_unit",  # POST /bulletins
    "relay_source_id": "relay_source",  # POST /live (a relay), programme items
    "fallback_clip_id": "clip",  # programme relay items
}


def _items(p: Any) -> list[dict[str, Any]]:
    """A relay (with a fallback clip) then a clip: every kind of object programme items name."""
    relay = {"kind": "relay", "relay_source_id": p("relay_source"), "duration_s": 10,
             "fallback_clip_id": p("clip")}  # fmt: skip
    return [relay, {"kind": "clip", "clip_id": p("clip")}]


def _new_programme(w: Any, p: Any, r: str) -> dict[str, Any]:
    return {"title": f"Tiếp âm {w.next()}", "items": _items(p), "zone_ids": [p("zone")],
            "start": w.start_at(), "org_unit_id": p("org_unit")}  # fmt: skip


ITEM_KINDS = ("org_unit", "zone", "clip", "relay_source")
# Bodies whose object fields the permission matrix does not vary (its body is enough there).
MORE_BODIES = {
    ("PATCH", "/api/v1/org-units/{unit_id}"): Body(
        ("org_unit",), lambda w, p, r: {"name": "Thôn Đổi Tên", "parent_id": p("org_unit")}
    ),
    ("PATCH", "/api/v1/programmes/{programme_id}"): Body(
        ITEM_KINDS,
        lambda w, p, r: {
            "title": "Sửa tên",
            "org_unit_id": p("org_unit"),
            "zone_ids": [p("zone")],
            "items": _items(p),
        },
    ),
    ("POST", "/api/v1/programmes"): Body(ITEM_KINDS, _new_programme),
    # The answer read on the horns: the zones it is broadcast to (issue 16).
    ("POST", "/api/v1/feedback/{case_id}/answer"): Body(
        ("zone",),
        lambda w, p, r: {"answer": "Xã đã xử lý.", "broadcast": True, "zone_ids": [p("zone")]},
    ),
    ("POST", "/api/v1/programmes/check"): Body(ITEM_KINDS, _new_programme),
}
# A CAP alert names org units by code (geocode), not by id: a foreign code answers like an
# unknown one (tests/server/test_cap_intake.py); the matrix checks the foreign variant.
MORE_BODIES[("POST", "/api/v1/cap")] = Body((), lambda w, p, r: None, xml=True)
LIVE = ("POST", "/api/v1/live")  # covered source by source in its own test below
ROLE = "admin"  # commune A's admin holds every permission: only reach can refuse


def _orgs(w: PermWorld) -> tuple[Org, Org]:
    assert w.a is not None and w.b is not None
    return w.a, w.b


def _resolve(spec: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in spec:
        spec = components[spec["$ref"].rsplit("/", 1)[-1]]
    return spec


def _id_fields(spec: dict[str, Any], components: dict[str, Any], seen: set[str]) -> set[str]:
    """Every property name ending in _id or _ids, at any depth of a JSON schema."""
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return set()
        seen = seen | {name}
    spec = _resolve(spec, components)
    found: set[str] = set()
    for name, prop in spec.get("properties", {}).items():
        if name.endswith(("_id", "_ids")):
            found.add(name)
        found |= _id_fields(prop, components, seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in spec.get(key, []):
            found |= _id_fields(sub, components, seen)
    if isinstance(spec.get("items"), dict):
        found |= _id_fields(spec["items"], components, seen)
    return found


def body_kinds(app: Any) -> dict[tuple[str, str], set[str]]:
    """(METHOD, path) -> the kinds of object its JSON body names, read from the schema."""
    doc = app.openapi()
    components = doc.get("components", {}).get("schemas", {})
    out: dict[tuple[str, str], set[str]] = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            content = op.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema")
            if schema is None:
                continue
            fields = _id_fields(schema, components, set())
            unknown = fields - set(FIELD_KINDS)
            assert not unknown, f"{method.upper()} {path}: describe {unknown} in FIELD_KINDS"
            if fields:
                out[(method.upper(), path)] = {FIELD_KINDS[f] for f in fields}
    return out


def _detail(r: Any, ref: object) -> tuple[int, str]:
    """Status and detail with the referenced id masked."""
    detail = r.json().get("detail") if r.content else None
    assert isinstance(detail, str), f"{r.status_code} {r.text[:200]}"
    return r.status_code, re.sub(rf"\b{re.escape(str(ref))}\b", "<id>", detail)


def _call(w: PermWorld, objects: Objects, op: Operation, where: str, ref: int | str) -> Any:
    """Call op as commune A's admin with every reference own except `where` = ref."""

    def own_or_ref(place: str, kind: str) -> Any:
        return ref if place == where else objects.existing(kind, foreign=False)

    path = re.sub(
        r"\{([^}]+)\}",
        lambda m: str(own_or_ref(f"path:{m.group(1)}", op.path_kinds[m.group(1)])),
        op.path,
    )
    params: dict[str, Any] = dict(QUERY_EXTRA.get(op.path, {}))
    for name, kind in op.query_kinds.items():
        if name in op.required_query or where == f"query:{name}":
            params[name] = own_or_ref(f"query:{name}", kind)
    body = MORE_BODIES.get(op.key) or BODIES.get(op.key)
    payload = (
        body.build(w, lambda kind: own_or_ref(f"body:{kind}", kind), ROLE)
        if body is not None and not body.multipart
        else None
    )
    return w.client.request(op.method, path, params=params, headers=w.headers(ROLE), json=payload)


def _foreign(objects: Objects, where: str, op: Operation) -> int | str:
    place, name = where.split(":", 1)
    kind = name if place == "body" else {**op.path_kinds, **op.query_kinds}[name]
    return objects.existing(kind, foreign=True)


def test_every_reference_outside_reach_answers_like_a_missing_one(perm_world: PermWorld) -> None:
    w = perm_world
    _, b = _orgs(w)
    kinds_in_bodies = body_kinds(w.stack.app)
    objects = Objects(w)
    failures: list[str] = []
    checked = 0
    for op in operations(w.stack.app):
        if op.key == LIVE:
            continue
        body = MORE_BODIES.get(op.key) or BODIES.get(op.key)
        declared = set(body.kinds) if body is not None else set()
        missing_kinds = kinds_in_bodies.get(op.key, set()) - declared
        assert not missing_kinds, f"{op.key}: body names {missing_kinds}; add them to MORE_BODIES"
        places = [f"path:{n}" for n in op.path_kinds] + [f"query:{n}" for n in op.query_kinds]
        places += [f"body:{k}" for k in declared]
        for where in places:
            label = f"{op.method} {op.path} {where}"
            foreign = _foreign(objects, where, op)
            absent = MISSING_SESSION if isinstance(foreign, str) else MISSING
            got_foreign = _call(w, objects, op, where, foreign)
            got_missing = _call(w, objects, op, where, absent)
            checked += 1
            if not 400 <= got_foreign.status_code < 500:
                failures.append(f"{label}: foreign answered {got_foreign.status_code}")
                continue
            if str(absent) not in got_missing.text:
                failures.append(f"{label}: the missing id was not what was refused: "
                                f"{got_missing.status_code} {got_missing.text[:200]}")  # fmt: skip
                continue
            if _detail(got_foreign, foreign) != _detail(got_missing, absent):
                failures.append(
                    f"{label}: foreign {got_foreign.status_code} {got_foreign.text[:160]} "
                    f"!= missing {got_missing.status_code} {got_missing.text[:160]}"
                )
            elif b.name in got_foreign.text:
                failures.append(f"{label}: the answer names commune B")
    assert checked >= 60, checked  # 64 when written: paths, filters and bodies
    assert not failures, f"{len(failures)} oracle(s):\n" + "\n".join(failures)


def _live(w: PermWorld, role: str, body: dict[str, Any]) -> Any:
    return w.client.post("/api/v1/live", json=body, headers=w.headers(role))


def test_every_source_of_live_refuses_foreign_references_like_missing_ones(
    perm_world: PermWorld,
) -> None:
    w = perm_world
    a, b = _orgs(w)
    url = "http://radio.invalid/stream"  # never fetched: the references are refused first
    cases: dict[str, tuple[dict[str, Any], int | str]] = {
        "mic zones": ({"source": "mic", "zone_ids": [a.zone, "REF"]}, b.zone),
        "url zones": ({"source": "url", "url": url, "zone_ids": ["REF"]}, b.zone),
        "file zones": ({"source": "file", "clip_id": a.clip, "zone_ids": ["REF"]}, b.zone),
        "mic org unit": ({"source": "mic", "org_unit_id": "REF"}, b.commune),
        "url org unit": ({"source": "url", "url": url, "org_unit_id": "REF"}, b.village),
        "file org unit": ({"source": "file", "clip_id": a.clip, "org_unit_id": "REF"}, b.commune),
        "file clip": ({"source": "file", "clip_id": "REF", "zone_ids": [a.zone]}, b.clip),
    }

    def body(template: dict[str, Any], ref: int) -> dict[str, Any]:
        def put(v: Any) -> Any:
            return [put(x) for x in v] if isinstance(v, list) else (ref if v == "REF" else v)

        return {k: put(v) for k, v in template.items()}

    failures: list[str] = []
    for role in ("operator", "admin"):
        for name, (template, foreign) in cases.items():
            assert isinstance(foreign, int)
            got_foreign = _live(w, role, body(template, foreign))
            got_missing = _live(w, role, body(template, MISSING))
            label = f"{role} {name}"
            if got_foreign.status_code == 201:
                w.admin("DELETE", f"/live/{got_foreign.json()['id']}")
                failures.append(f"{label}: commune B's object was accepted (201)")
            elif str(MISSING) not in got_missing.text:
                failures.append(f"{label}: {got_missing.status_code} {got_missing.text[:200]}")
            elif _detail(got_foreign, foreign) != _detail(got_missing, MISSING):
                failures.append(f"{label}: {got_foreign.text[:160]} != {got_missing.text[:160]}")
    assert not failures, "\n".join(failures)
    # The clip rule is the one clips follow everywhere: shared down from above, and
    # system-wide clips, are playable; only another branch's clips are not.
    for owner in (w.province, None):
        clip = w.db_clip(owner, duration_s=1.0)
        r = _live(w, "operator", {"source": "file", "clip_id": clip, "zone_ids": [a.zone]})
        assert r.status_code == 201, r.text
        assert (
            w.client.delete(
                f"/api/v1/live/{r.json()['id']}", headers=w.headers("operator")
            ).status_code
            == 200
        )
