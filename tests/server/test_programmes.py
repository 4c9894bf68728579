"""Programmes over the API: CRUD, the approval flow with history, conflicts, bad input."""

from __future__ import annotations

from datetime import timedelta

from tests.server.test_programmes_fixtures import NOW, World, daily, one_off, world

__all__ = ["world"]  # the fixture, imported for pytest


def _base(w: World) -> tuple[int, int, int]:
    org = w.org()
    zone = w.zone(org, name="Thôn Đông")
    clip = w.clip(duration_s=120, title="Bản tin sáng")
    return org, zone, clip.id


def test_full_approval_flow_is_recorded_in_the_history(world: World) -> None:
    org, zone, clip = _base(world)
    p = world.programme(**daily([clip, clip], [zone], title="Bản tin sáng", volume=80))
    assert p["status"] == "draft" and p["org_unit_id"] == org
    assert p["clip_ids"] == [clip, clip] and p["duration_s"] == 240
    assert p["rrule"] == "FREQ=DAILY;BYHOUR=5;BYMINUTE=0;BYSECOND=0"
    pid = p["id"]
    assert world.post(f"/programmes/{pid}/submit", expect=200)["status"] == "submitted"
    assert (
        world.post(f"/programmes/{pid}/approve", {"reason": "ok"}, expect=200)["status"]
        == "approved"
    )
    r = world.client.patch(f"/api/v1/programmes/{pid}", json={"title": "x"}, headers=world.headers)
    assert r.status_code == 409 and "only drafts and rejected" in r.json()["detail"]
    assert (
        world.client.delete(f"/api/v1/programmes/{pid}", headers=world.headers).status_code == 409
    )
    cancelled = world.post(f"/programmes/{pid}/cancel", {"reason": "no longer needed"}, expect=200)
    assert cancelled["status"] == "cancelled"
    history = world.get(f"/programmes/{pid}")["history"]
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        (None, "draft"), ("draft", "submitted"), ("submitted", "approved"),
        ("approved", "cancelled"),
    ]  # fmt: skip
    assert all(h["user_id"] == 1 for h in history)
    assert history[-1]["note"] == "no longer needed"
    assert world.post(f"/programmes/{pid}/approve")["detail"].startswith(f"Programme {pid} is")


def test_rejection_needs_a_reason_and_an_edit_returns_it_to_draft(world: World) -> None:
    _org, zone, clip = _base(world)
    pid = world.programme(**one_off([clip], [zone], at=NOW + timedelta(days=1)))["id"]
    world.post(f"/programmes/{pid}/submit", expect=200)
    assert (
        "reason" in world.post(f"/programmes/{pid}/reject", {"reason": "  "}, expect=422)["detail"]
    )
    rejected = world.post(f"/programmes/{pid}/reject", {"reason": "wrong clip"}, expect=200)
    assert rejected["status"] == "rejected" and rejected["rejection_reason"] == "wrong clip"
    r = world.client.patch(
        f"/api/v1/programmes/{pid}",
        json={"title": "Thông báo mới", "volume": None, "description": None},
        headers=world.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "draft" and r.json()["title"] == "Thông báo mới"
    assert r.json()["description"] == "" and r.json()["volume"] is None
    assert [h["to_status"] for h in r.json()["history"]] == [
        "draft",
        "submitted",
        "rejected",
        "draft",
    ]
    world.post(f"/programmes/{pid}/submit", expect=200)


def test_only_drafts_are_deleted(world: World) -> None:
    _org, zone, clip = _base(world)
    pid = world.programme(**one_off([clip], [zone], at=NOW + timedelta(hours=3)))["id"]
    assert (
        world.client.delete(f"/api/v1/programmes/{pid}", headers=world.headers).status_code == 204
    )
    assert world.client.get(f"/api/v1/programmes/{pid}", headers=world.headers).status_code == 404


def test_same_priority_overlap_is_refused_at_submit_naming_the_other_programme(
    world: World,
) -> None:
    org, zone, clip = _base(world)
    first = world.approved(**daily([clip], [zone], hour=5, title="Bản tin sáng"))
    # 05:01 local on 2031-03-05 falls inside the first programme's two-minute playback.
    clash = one_off([clip], [zone], at=NOW + timedelta(days=2, hours=-2, minutes=1), title="Họp")
    second = world.programme(**clash)
    report = world.post("/programmes/check", {**clash, "org_unit_id": org}, expect=200)
    assert [c["other_programme_id"] for c in report["conflicts"]] == [first["id"]]
    assert world.get(f"/programmes/{second['id']}/conflicts")["conflicts"][0]["zone_ids"] == [zone]
    detail = world.post(f"/programmes/{second['id']}/submit", expect=409)["detail"]
    assert f"programme {first['id']} 'Bản tin sáng'" in detail
    assert f"zone {zone} 'Thôn Đông'" in detail
    assert "2031-03-05 05:01" in detail  # first overlap, local time
    assert world.get(f"/programmes/{second['id']}")["status"] == "draft"


def test_different_priorities_do_not_conflict(world: World) -> None:
    org, zone, clip = _base(world)
    world.approved(**daily([clip], [zone], hour=5))
    urgent = world.programme(**daily([clip], [zone], hour=5, priority="priority", title="Gấp"))
    assert world.post(f"/programmes/{urgent['id']}/submit", expect=200)["status"] == "submitted"
    later = {**daily([clip], [zone], hour=6), "org_unit_id": org}
    assert world.post("/programmes/check", later, expect=200)["conflicts"] == []


def test_emergency_can_be_approved_at_creation_by_an_admin_only(world: World) -> None:
    org, zone, clip = _base(world)
    body = one_off([clip], [zone], at=NOW + timedelta(minutes=5), title="Bão số 3",
                   priority="emergency", approve_now=True)  # fmt: skip
    p = world.programme(**body)
    assert p["status"] == "approved"
    assert [h["to_status"] for h in p["history"]] == ["draft", "approved"]
    normal = {**body, "priority": "normal"}
    assert "Only emergency" in world.programme(expect=422, **normal)["detail"]
    world.post("/users", {"username": "bien-tap", "password": "secret-pass-1", "role": "editor",
                          "org_unit_id": org}, expect=201)  # fmt: skip
    token = world.client.post(
        "/api/v1/auth/token", data={"username": "bien-tap", "password": "secret-pass-1"}
    ).json()["access_token"]
    editor = {"Authorization": f"Bearer {token}"}
    later = {**body, "start": (NOW + timedelta(hours=2)).isoformat()}
    r = world.client.post("/api/v1/programmes", json=later, headers=editor)
    assert r.status_code == 403 and "emergency" in r.json()["detail"]
    draft = world.client.post("/api/v1/programmes", json={**later, "approve_now": False},
                              headers=editor)  # fmt: skip
    assert draft.status_code == 201 and draft.json()["org_unit_id"] == org  # the editor's unit
    world.client.post(f"/api/v1/programmes/{draft.json()['id']}/submit", headers=editor)
    r = world.client.post(f"/api/v1/programmes/{draft.json()['id']}/approve", headers=editor)
    assert r.status_code == 403


def test_bad_input_is_refused_in_plain_words(world: World) -> None:
    org, zone, clip = _base(world)
    other_org = world.org()
    foreign_zone = world.zone(other_org)
    soon = NOW + timedelta(days=1)
    cases = [
        (one_off([clip, 9999], [zone], at=soon), "Unknown clip id(s): 9999"),
        (one_off([clip], [zone, 8888], at=soon), "Unknown zone id(s): 8888"),
        (one_off([], [zone], at=soon), "at least one clip"),
        (one_off([clip], [], at=soon), "at least one zone"),
        (one_off([clip], [zone], at=NOW - timedelta(minutes=1)), "is in the past"),
        (one_off([clip], [foreign_zone], at=soon, org_unit_id=org), "outside org unit"),
        ({**one_off([clip], [zone], at=soon), "start": "2031-03-04T05:00:00"}, "time zone"),
        ({**daily([clip], [zone]), "rrule": "FREQ=DAILY;BYHOUR=25"}, "invalid recurrence rule"),
        ({**daily([clip], [zone]), "rrule": "FREQ=SOMETIMES"}, "FREQ must be one of"),
        ({**daily([clip], [zone]), "rrule": None, "recurrence_preset": "hourly"},
         "Unknown recurrence preset"),
        ({**daily([clip], [zone]), "start": soon.isoformat()}, "not both"),
        ({**daily([clip], [zone]), "dtstart": None}, "Say when it plays"),
        ({**daily([clip], [zone]), "valid_until": "2031-03-01T00:00:00Z"}, "in the past"),
        ({**daily([clip], [zone]), "valid_from": "2031-05-01T00:00:00Z",
          "valid_until": "2031-04-01T00:00:00Z"}, "later than valid_from"),
        ({**daily([clip], [zone]), "rrule": "FREQ=DAILY;COUNT=1", "dtstart": "2031-03-01T05:00:00"},
         "never plays"),
        ({**one_off([clip], [zone], at=soon), "volume": 101}, "volume"),
        ({**one_off([clip], [zone], at=soon), "priority": "urgent"}, "priority"),
    ]  # fmt: skip
    for body, words in cases:
        r = world.client.post(
            "/api/v1/programmes", json={"org_unit_id": org, **body}, headers=world.headers
        )
        assert 400 <= r.status_code < 500, (body, r.text)
        assert words in r.json()["detail"], (words, r.json()["detail"])
    assert world.get("/programmes")["total"] == 0


def test_a_preset_gives_the_rule_and_filters_find_programmes(world: World) -> None:
    org, zone, clip = _base(world)
    presets = {p["key"]: p["rrule"] for p in world.get("/programmes/presets")}
    assert "daily_0500_1700" in presets
    body = {**daily([clip], [zone]), "rrule": None, "recurrence_preset": "daily_0500_1700"}
    p = world.programme(**body)
    assert p["rrule"] == presets["daily_0500_1700"]
    other = world.zone(org)
    q = world.programme(**one_off([clip], [other], at=NOW + timedelta(days=1)))
    world.post(f"/programmes/{q['id']}/submit", expect=200)
    assert [x["id"] for x in world.get("/programmes", zone_id=zone)["items"]] == [p["id"]]
    assert [x["id"] for x in world.get("/programmes", status="submitted")["items"]] == [q["id"]]
    assert world.get("/programmes", org_unit_id=org)["total"] == 2
    assert world.get("/programmes", org_unit_id=world.org())["total"] == 0
    r = world.client.get("/api/v1/programmes?status=late", headers=world.headers)
    assert r.status_code == 422 and "Unknown status" in r.json()["detail"]


def test_a_clip_in_an_unfinished_programme_cannot_be_deleted(world: World) -> None:
    _org, zone, clip = _base(world)
    p = world.programme(**one_off([clip], [zone], at=NOW + timedelta(days=1), title="Loa phường"))
    r = world.client.delete(f"/api/v1/clips/{clip}", headers=world.headers)
    assert r.status_code == 409 and "Loa phường" in r.json()["detail"]
    world.post(f"/programmes/{p['id']}/cancel", expect=200)
    assert world.client.delete(f"/api/v1/clips/{clip}", headers=world.headers).status_code == 204
    assert world.get(f"/programmes/{p['id']}")["clip_ids"] == []
