"""Bulletins over the API: a province sends, its board approves, communes accept or decline.

One world per module (province P, communes A and B, real SQLite and a real broker): every test
makes its own bulletins, so they never depend on each other's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from server.access.actor import load_actor
from server.audit.models import AuditEntry
from server.bulletins import service
from server.bulletins.models import Bulletin, BulletinDelivery
from server.bulletins.schemas import BulletinCreate
from server.clips.models import Clip
from server.domain import DomainError
from server.programmes.models import Programme, ProgrammeTransition
from server.sources.models import Source
from server.users.models import User
from tests.conftest import BACKENDS
from tests.server.test_permissions_fixtures import (
    PASSWORD,
    Org,
    PermWorld,
    running_perm_world,
)

_minutes = itertools.count(1)


@dataclass
class World:
    """The permission world plus province users and a commune-B operator."""

    w: PermWorld
    a: Org
    b: Org
    tokens: dict[str, str]
    clip: int  # a province clip (shared down to the communes)

    def call(
        self, who: str, method: str, path: str, body: Any = None, expect: int | None = None
    ) -> Any:
        """Call /api/v1 as one of the named users ('a-operator', 'p-editor', …)."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        r = self.w.client.request(method, f"/api/v1{path}", json=body, headers=headers)
        if expect is not None:
            assert r.status_code == expect, f"{who} {method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def send(self, who: str = "p-editor", expect: int = 201, **fields: Any) -> Any:
        """POST /bulletins with sensible defaults (normal, the province clip, 10 days)."""
        body = {
            "title": "Thông báo lịch tiêm chủng",
            "clip_ids": [self.clip],
            "valid_until": (datetime.now(UTC) + timedelta(days=10)).isoformat(),
            **fields,
        }
        return self.call(who, "POST", "/bulletins", body, expect=expect)

    def approved(self, **fields: Any) -> Any:
        """A bulletin sent by the province editor and approved by its board."""
        sent = self.send(**fields)
        return self.call("p-approver", "POST", f"/bulletins/{sent['id']}/approve", expect=200)

    def count(self, model: Any) -> int:
        """Rows of a table."""
        with self.w.stack.session() as db:  # type: ignore[no-untyped-call]
            return int(db.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """Built once per backend; the users: commune A's roles, province editor and approver."""
    tmp: Path = tmp_path_factory.mktemp("bulletins")
    with running_perm_world(request.param, tmp) as w:
        assert w.a is not None and w.b is not None
        tokens = {f"a-{role}": token for role, token in w.tokens.items()}
        for name, org, role, emergency in (
            ("p-editor", w.province, "editor", False),
            ("p-approver", w.province, "approver", True),
            ("b-operator", w.b.commune, "operator", False),
        ):
            body = {
                "username": name,
                "password": PASSWORD,
                "role": role,
                "org_unit_id": org,
                "can_emergency": emergency,
            }
            w.admin("POST", "/users", body, expect=201)
            tokens[name] = w.sign_in(name)
        w.admin("PATCH", f"/org-units/{w.b.commune}", {"code": "26734"}, expect=200)
        yield World(w=w, a=w.a, b=w.b, tokens=tokens, clip=w.db_clip(w.province))


def _start() -> datetime:
    """A distinct start tomorrow, so accepted programmes never conflict with each other."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=1, minutes=next(_minutes))


def _delivery(detail: dict[str, Any], org_unit_id: int) -> dict[str, Any]:
    return next(d for d in detail["deliveries"] if d["org_unit_id"] == org_unit_id)


def test_province_to_two_communes_normal_flow(world: World) -> None:
    a, b = world.a, world.b
    sent = world.send(target_org_unit_ids=[a.commune], target_codes=["26734"], topic="y tế")
    assert sent["status"] == "submitted" and sent["deliveries"] == []
    assert sent["org_unit_id"] == world.w.province
    assert sent["target_org_unit_ids"] == sorted([a.commune, b.commune])
    bid = sent["id"]
    inbox = world.call("a-operator", "GET", "/bulletins/inbox", expect=200)
    assert bid not in [i["bulletin"]["id"] for i in inbox["items"]]  # not before the approval
    # The editor may not approve; the province's board does.
    world.call("p-editor", "POST", f"/bulletins/{bid}/approve", expect=403)
    approved = world.call("p-approver", "POST", f"/bulletins/{bid}/approve", expect=200)
    assert approved["status"] == "approved" and approved["approved_at"] is not None
    assert [(d["org_unit_id"], d["status"]) for d in approved["deliveries"]] == [
        (a.commune, "delivered"),
        (b.commune, "delivered"),
    ]
    assert [d["clusters_targeted"] for d in approved["deliveries"]] == [1, 1]
    assert approved["delivery_counts"] == {"delivered": 2}
    world.call("p-approver", "POST", f"/bulletins/{bid}/approve", expect=409)

    inbox = world.call("a-operator", "GET", "/bulletins/inbox", expect=200)
    mine = [i for i in inbox["items"] if i["bulletin"]["id"] == bid]
    assert len(mine) == 1 and mine[0]["delivery"]["status"] == "delivered"
    assert inbox["new"] >= 1 and inbox["items"][0]["bulletin"]["id"] == bid  # newest first
    new_before = inbox["new"]
    seen = world.call("a-operator", "POST", f"/bulletins/{bid}/seen", expect=200)
    assert [d["status"] for d in seen["deliveries"]] == ["seen"]  # only its own delivery
    assert world.call("a-operator", "GET", "/bulletins/inbox", expect=200)["new"] == new_before - 1

    start = _start()
    body = {"start": start.isoformat()}
    accepted = world.call("a-operator", "POST", f"/bulletins/{bid}/accept", body, expect=200)
    ours = _delivery(accepted, a.commune)
    assert ours["status"] == "scheduled" and ours["first_start"] is not None
    assert datetime.fromisoformat(ours["first_start"]) == start
    programme = world.w.admin("GET", f"/programmes/{ours['programme_id']}", expect=200)
    assert programme["status"] == "approved" and programme["org_unit_id"] == a.commune
    assert programme["clip_ids"] == [world.clip] and programme["zone_ids"] == [a.zone]
    assert programme["priority"] == "normal" and programme["valid_until"] == sent["valid_until"]
    assert programme["history"][-1]["note"] == f"accepted from bulletin {bid}"
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        assert db.get(Programme, ours["programme_id"]).bulletin_id == bid
        actions = set(db.scalars(select(AuditEntry.action).where(AuditEntry.object_id == str(bid))))
    assert {"bulletin.create", "bulletin.approve", "bulletin.seen", "bulletin.accept"} <= actions
    world.call("a-operator", "POST", f"/bulletins/{bid}/accept", body, expect=409)

    # The sender sees every commune's status.
    sender_view = world.call("p-editor", "GET", f"/bulletins/{bid}", expect=200)
    assert [(d["org_unit_id"], d["status"]) for d in sender_view["deliveries"]] == [
        (a.commune, "scheduled"),
        (b.commune, "delivered"),
    ]
    listed = world.call("p-editor", "GET", "/bulletins?status=approved&level=normal", expect=200)
    assert bid in [x["id"] for x in listed["items"]]
    assert world.call("p-editor", "GET", "/bulletins?level=emergency", expect=200)["items"] == []


def test_decline_needs_a_reason_and_is_final(world: World) -> None:
    bid = world.approved(target_org_unit_ids=[world.a.commune])["id"]
    path = f"/bulletins/{bid}/decline"
    assert "reason" in world.call("a-operator", "POST", path, {}, expect=422)["detail"]
    world.call("a-operator", "POST", path, {"reason": ""}, expect=422)
    detail = world.call("a-operator", "POST", path, {"reason": "   "}, expect=422)["detail"]
    assert detail == "Say why you decline the bulletin (reason is empty)."
    declined = world.call("a-approver", "POST", path, {"reason": "Trùng tin xã đã phát"}, 200)
    assert declined["deliveries"][0]["status"] == "declined"
    sender_view = world.call("p-editor", "GET", f"/bulletins/{bid}", expect=200)
    assert sender_view["deliveries"][0]["decline_reason"] == "Trùng tin xã đã phát"
    r = world.call(
        "a-operator", "POST", f"/bulletins/{bid}/accept", {"start": _start().isoformat()}
    )
    assert r["detail"] == f"Bulletin {bid} was declined there."
    # A viewer reads the inbox but may not answer it.
    world.call("a-viewer", "POST", path, {"reason": "x"}, expect=403)


def test_another_commune_neither_sees_nor_accepts(world: World) -> None:
    bid = world.approved(target_org_unit_ids=[world.a.commune])["id"]
    missing = 2_000_000_000
    for method, suffix, body in (
        ("GET", "", None),
        ("POST", "/seen", None),
        ("POST", "/accept", {"start": _start().isoformat()}),
        ("POST", "/decline", {"reason": "không"}),
    ):
        theirs = world.w.client.request(
            method,
            f"/api/v1/bulletins/{bid}{suffix}",
            json=body,
            headers={"Authorization": f"Bearer {world.tokens['b-operator']}"},
        )
        nobody = world.w.client.request(
            method,
            f"/api/v1/bulletins/{missing}{suffix}",
            json=body,
            headers={"Authorization": f"Bearer {world.tokens['b-operator']}"},
        )
        assert (theirs.status_code, nobody.status_code) == (404, 404), suffix
        assert theirs.json()["detail"].replace(str(bid), "N") == nobody.json()["detail"].replace(
            str(missing), "N"
        )
    inbox = world.call("b-operator", "GET", "/bulletins/inbox", expect=200)
    assert bid not in [i["bulletin"]["id"] for i in inbox["items"]]
    # Nor does a commune see what the province sent elsewhere among its sent bulletins.
    assert bid not in [x["id"] for x in world.call("a-viewer", "GET", "/bulletins")["items"]]


def test_targets_by_code_village_and_refusals(world: World) -> None:
    a, b = world.a, world.b
    before = world.count(Bulletin)
    detail = world.send(target_codes=["99999", "26734"], expect=422)["detail"]
    assert detail == "Unknown org unit id(s)/code(s): 99999."
    # From commune A, commune B (by id or by code) is unknown, like an id nobody has.
    theirs = world.send("a-editor", target_org_unit_ids=[b.commune], clip_ids=[a.clip], expect=422)
    missing = world.send(
        "a-editor", target_org_unit_ids=[2_000_000_000], clip_ids=[a.clip], expect=422
    )
    assert theirs["detail"] == f"Unknown org unit id(s)/code(s): {b.commune}."
    assert missing["detail"] == "Unknown org unit id(s)/code(s): 2000000000."
    by_code = world.send("a-editor", target_codes=["26734"], clip_ids=[a.clip], expect=422)
    assert by_code["detail"] == "Unknown org unit id(s)/code(s): 26734."
    assert world.send(expect=422)["detail"].startswith("Choose at least one target")
    assert world.count(Bulletin) == before
    # A village is served through its commune.
    sent = world.send("a-editor", target_org_unit_ids=[a.village], clip_ids=[a.clip])
    assert sent["org_unit_id"] == a.commune
    approved = world.call("a-approver", "POST", f"/bulletins/{sent['id']}/approve", expect=200)
    assert [d["org_unit_id"] for d in approved["deliveries"]] == [a.commune]


def test_bad_input_creates_nothing(world: World) -> None:
    now = datetime.now(UTC)
    target: dict[str, Any] = {"target_org_unit_ids": [world.a.commune]}
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "ended": ({"valid_until": (now - timedelta(minutes=1)).isoformat()}, "has already passed"),
        "order": (
            {
                "valid_from": (now + timedelta(days=3)).isoformat(),
                "valid_until": (now + timedelta(days=2)).isoformat(),
            },
            "valid_until must be later than valid_from",
        ),
        "naive": ({"valid_until": "2031-03-01T05:00:00"}, "needs a time zone"),
        "no audio": ({"clip_ids": [], "text": "  "}, "audio (clip_ids) or a text"),
        "foreign clip": ({"clip_ids": [world.b.clip]}, f"Unknown clip id(s): {world.b.clip}."),
        "repeat": ({"repeat_every_min": 30}, "emergency bulletins only"),
        "level": ({"level": "urgent"}, "level"),
    }
    before = (world.count(Bulletin), world.count(BulletinDelivery), world.count(Clip))
    for name, (fields, words) in cases.items():
        who = "a-editor" if name == "foreign clip" else "p-editor"
        detail = world.send(who, expect=422, **{**target, **fields})["detail"]
        assert words in detail, (name, detail)
    assert (world.count(Bulletin), world.count(BulletinDelivery), world.count(Clip)) == before
    bid = world.send(**target)["id"]
    r = world.call("p-approver", "POST", f"/bulletins/{bid}/reject", {"reason": " "}, 422)
    assert r["detail"] == "Say why the bulletin is rejected (reason is empty)."
    rejected = world.call("p-approver", "POST", f"/bulletins/{bid}/reject", {"reason": "Sai"}, 200)
    assert rejected["status"] == "rejected" and rejected["rejection_reason"] == "Sai"
    world.call("p-approver", "POST", f"/bulletins/{bid}/approve", expect=409)
    assert world.count(BulletinDelivery) == before[1]


def test_accept_refusals(world: World) -> None:
    a = world.a
    bid = world.approved(target_org_unit_ids=[a.commune])["id"]
    path = f"/bulletins/{bid}/accept"
    late = (datetime.now(UTC) + timedelta(days=20)).isoformat()
    assert (
        "inside the bulletin's validity"
        in world.call("a-operator", "POST", path, {"start": late}, 422)["detail"]
    )
    assert "not both" in world.call("a-operator", "POST", path, {}, 422)["detail"]
    no_slot = world.call("a-operator", "POST", path, {"next_slot": True}, 422)["detail"]
    assert no_slot.startswith("This commune has no regular slot")
    foreign_zone = world.call(
        "a-operator", "POST", path, {"start": _start().isoformat(), "zone_ids": [world.b.zone]}
    )
    assert foreign_zone["detail"] == f"Unknown zone id(s): {world.b.zone}."
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        assert db.scalar(select(func.count()).where(Programme.bulletin_id == bid)) == 0
    # Once its validity ended, nothing can be scheduled from it.
    app = world.w.stack.app
    real_clock = app.state.clock
    app.state.clock = lambda: datetime.now(UTC) + timedelta(days=11)
    try:
        r = world.call("a-operator", "POST", path, {"start": late}, 422)
    finally:
        app.state.clock = real_clock
    assert "validity ended" in r["detail"]


def test_cancel_withdraws_deliveries_and_stops_their_programmes(world: World) -> None:
    a = world.a
    bid = world.approved(target_org_unit_ids=[a.commune, world.b.commune])["id"]
    accepted = world.call(
        "a-operator", "POST", f"/bulletins/{bid}/accept", {"start": _start().isoformat()}, 200
    )
    pid = _delivery(accepted, a.commune)["programme_id"]
    cancelled = world.call("p-approver", "POST", f"/bulletins/{bid}/cancel", expect=200)
    assert cancelled["status"] == "cancelled"
    assert [d["status"] for d in cancelled["deliveries"]] == ["withdrawn", "withdrawn"]
    assert world.w.admin("GET", f"/programmes/{pid}")["status"] == "cancelled"
    r = world.call(
        "a-operator", "POST", f"/bulletins/{bid}/accept", {"start": _start().isoformat()}
    )
    assert r["detail"] == f"Bulletin {bid} was withdrawn by its sender."
    world.call("p-approver", "POST", f"/bulletins/{bid}/cancel", expect=409)


def test_emergency_from_a_user_who_may_run_one_is_delivered_at_once(world: World) -> None:
    a = world.a
    kept = world.send(level="emergency", target_org_unit_ids=[a.commune])  # an editor: waits
    assert kept["status"] == "submitted" and kept["deliveries"] == []
    sent = world.send(
        "p-approver", level="emergency", target_org_unit_ids=[a.commune], repeat_every_min=30
    )
    assert sent["status"] == "approved" and sent["approved_by"] is not None
    assert [d["org_unit_id"] for d in sent["deliveries"]] == [a.commune]
    assert (
        world.call("p-approver", "POST", f"/bulletins/{sent['id']}/cancel", expect=200)["status"]
        == "cancelled"
    )


def test_priority_delivery_unplayed_past_its_validity_is_flagged(world: World) -> None:
    bid = world.approved(level="priority", target_org_unit_ids=[world.a.commune])["id"]
    assert not world.call("p-editor", "GET", f"/bulletins/{bid}", expect=200)["overdue"]
    app = world.w.stack.app
    real_clock = app.state.clock
    app.state.clock = lambda: datetime.now(UTC) + timedelta(days=11)
    try:
        view = world.call("p-editor", "GET", f"/bulletins/{bid}", expect=200)
    finally:
        app.state.clock = real_clock
    assert view["overdue"] == 1 and view["deliveries"][0]["overdue"] is True
    world.call("p-approver", "POST", f"/bulletins/{bid}/cancel", expect=200)


def test_text_only_bulletin_is_read_out_by_tts(world: World) -> None:
    text = "Xã thông báo lịch tiêm chủng cho trẻ em vào sáng thứ bảy."
    sent = world.send(clip_ids=[], text=text, target_org_unit_ids=[world.a.commune])
    assert sent["clip_ids"] == [] and sent["tts_clip_id"] is not None
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        clip = db.get(Clip, sent["tts_clip_id"])
        assert clip.source == "tts" and clip.org_unit_id == world.w.province
        assert clip.duration_s > 1.0
    approved = world.call("p-approver", "POST", f"/bulletins/{sent['id']}/approve", expect=200)
    accepted = world.call(
        "a-operator",
        "POST",
        f"/bulletins/{approved['id']}/accept",
        {"start": _start().isoformat()},
        200,
    )
    pid = accepted["deliveries"][0]["programme_id"]
    assert world.w.admin("GET", f"/programmes/{pid}")["clip_ids"] == [sent["tts_clip_id"]]


def _source_actor(world: World, max_level: str, trusted: str) -> Any:
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        n = world.w.next()
        user = User(
            username=f"src{n}", password_hash="x", role="source", org_unit_id=world.w.province
        )
        db.add(user)
        db.flush()
        db.add(
            Source(
                name=f"Sở {n}",
                org_unit_id=world.w.province,
                user_id=user.id,
                max_level=max_level,
                trusted_levels=trusted,
                key_hint=f"h{n}",
                key_hash=f"{n:064x}",
            )
        )
        return user.id


def test_a_source_sends_up_to_its_level_and_skips_approval_where_trusted(world: World) -> None:
    uid = _source_actor(world, "priority", "normal")
    until = datetime.now(UTC) + timedelta(days=2)

    def send(level: str) -> tuple[str, int | None, int]:
        fields = BulletinCreate(
            title="Tin của sở",
            level=level,
            clip_ids=[world.clip],
            valid_until=until,
            target_org_unit_ids=[world.a.commune],
        )
        with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
            actor = load_actor(db, user=db.get_one(User, uid), ip="test", via_cookie=False)
            made = service.create(db, actor=actor, fields=fields, now=datetime.now(UTC))
            query = select(func.count()).where(BulletinDelivery.bulletin_id == made.id)
            return made.status, made.source_id, int(db.scalar(query) or 0)

    with pytest.raises(DomainError) as refused:
        send("emergency")
    assert (refused.value.status_code, refused.value.detail) == (
        403,
        "This source may send bulletins up to priority.",
    )
    status, source_id, delivered = send("normal")
    assert status == "approved" and source_id is not None and delivered == 1
    status, _, delivered = send("priority")
    assert status == "submitted" and delivered == 0


def test_history_of_an_accepted_programme_names_the_bulletin(world: World) -> None:
    bid = world.approved(target_org_unit_ids=[world.a.commune])["id"]
    detail = world.call(
        "a-operator",
        "POST",
        f"/bulletins/{bid}/accept",
        {"start": _start().isoformat(), "zone_ids": [world.a.zone]},
        200,
    )
    pid = detail["deliveries"][0]["programme_id"]
    with world.w.stack.session() as db:  # type: ignore[no-untyped-call]
        notes = list(
            db.scalars(
                select(ProgrammeTransition.to_status)
                .where(ProgrammeTransition.programme_id == pid)
                .order_by(ProgrammeTransition.id)
            )
        )
        shown = db.get(Programme, pid).display_text
    assert notes == ["draft", "approved"]
    bulletin = world.call("a-operator", "GET", f"/bulletins/{bid}", None, 200)
    assert shown == (bulletin["text"] or bulletin["title"])  # what the commune's e-boards show


def test_accept_into_the_communes_next_regular_slot(world: World) -> None:
    b = world.b
    slots = {"slots": [{"start_time": "05:00", "weekdays": "1234567"}]}
    world.w.admin("PUT", f"/org-units/{b.commune}/slots", slots, expect=200)
    bid = world.approved(target_codes=["26734"])["id"]
    accepted = world.call(
        "b-operator", "POST", f"/bulletins/{bid}/accept", {"next_slot": True}, expect=200
    )
    start = datetime.fromisoformat(accepted["deliveries"][0]["first_start"])
    # 05:00 in Asia/Ho_Chi_Minh (UTC+7) is 22:00 UTC, within the next day.
    assert (start.hour, start.minute) == (22, 0)
    assert timedelta(0) < start - datetime.now(UTC) <= timedelta(days=1)
    pid = accepted["deliveries"][0]["programme_id"]
    programme = world.w.admin("GET", f"/programmes/{pid}", expect=200)
    assert datetime.fromisoformat(programme["start"]) == start
    assert programme["zone_ids"] == [b.zone]  # default: every zone of the commune
