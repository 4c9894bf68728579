"""Relay sources: the admins' list of stations, address refusals, reach, audit, bounds.

A running server on real SQLite (and PostgreSQL when configured). Province P with communes
A and B; commune A's administrator keeps the list. Addresses are literal IPs or `localhost`
(resolved by the system resolver from /etc/hosts), so no test needs the Internet; only the
two tests of a name with several addresses and of a slow resolver pass a resolver in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from loa_testkit.stack import Stack
from server.audit.models import AuditEntry
from server.relay import address
from server.relay.address import UrlRefused
from tests.server.test_permissions_fixtures import PASSWORD, PermWorld

PUBLIC = "https://203.162.4.190/vov1"  # a public address (no DNS lookup)
REFUSED = [
    "http://127.0.0.1/stream",
    "http://127.8.9.10:8000/stream",
    "http://10.1.2.3/stream",
    "http://172.16.0.5/stream",
    "http://192.168.1.10:8000/live",
    "http://100.64.0.1/stream",
    "http://169.254.169.254/latest/meta-data",
    "http://224.0.0.251/stream",
    "http://0.0.0.0/stream",
    "http://[::1]/stream",
    "http://[::]/stream",
    "http://[fe80::1]/stream",
    "http://[fc00::5]/stream",
    "http://[ff02::1]/stream",
    "http://[::ffff:127.0.0.1]/stream",
    "http://[::ffff:10.0.0.1]:8000/stream",
    "http://localhost:8000/stream",
    "http://LOCALHOST./stream",
]


@dataclass
class World:
    """The API, commune A's admin and operator, and the communes' ids."""

    w: PermWorld
    a: int
    b: int
    admin_a: dict[str, str]
    admin_b: dict[str, str]
    operator_a: dict[str, str]

    def call(self, method: str, path: str, body: Any = None, headers: Any = None) -> Any:
        """A request as commune A's admin (or with the headers given)."""
        return self.w.client.request(
            method, f"/api/v1{path}", json=body, headers=headers or self.admin_a
        )

    def create(self, expect: int = 201, **fields: Any) -> Any:
        """POST /relay-sources as commune A's admin."""
        body = {"name": "VOV1", "url": PUBLIC, "kind": "national", "org_unit_id": self.a}
        r = self.call("POST", "/relay-sources", body | fields)
        assert r.status_code == expect, r.text
        return r.json()


@pytest.fixture
def world(api: Stack) -> Iterator[World]:
    w = PermWorld(stack=api)
    w.province = int(
        w.admin("POST", "/org-units", {"name": "Tỉnh Thử", "kind": "province"}, expect=201)["id"]
    )
    a, b = w.org_unit(w.province, kind="commune"), w.org_unit(w.province, kind="commune")
    heads = []
    for name, role, unit in (("admin-a", "admin", a), ("admin-b", "admin", b),
                             ("operator-a", "operator", a)):  # fmt: skip
        body = {"username": name, "password": PASSWORD, "role": role, "org_unit_id": unit}
        w.admin("POST", "/users", body, expect=201)
        heads.append({"Authorization": f"Bearer {w.sign_in(name)}"})
    yield World(w, a, b, *heads)


def _audit(stack: Stack, action: str) -> list[AuditEntry]:
    with stack.session() as db:  # type: ignore[no-untyped-call]
        rows = list(
            db.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )
        db.expunge_all()
        return rows


def test_admin_keeps_the_list_and_every_change_is_audited(world: World) -> None:
    vov = world.create()
    assert vov | {"id": 0, "created_at": "", "updated_at": "", "created_by": 0} == {
        "id": 0, "name": "VOV1", "url": PUBLIC, "kind": "national", "enabled": True,
        "allow_private": False, "org_unit_id": world.a, "created_by": 0, "created_at": "",
        "updated_at": "",
    }  # fmt: skip
    province = world.create(
        name="  Đài  tỉnh ", url="http://203.162.4.191:8000/fm", kind="provincial"
    )
    assert province["name"] == "Đài tỉnh"
    listed = world.call("GET", "/relay-sources").json()
    assert {s["name"] for s in listed} == {"Đài tỉnh", "VOV1"}  # by name: collation decides
    assert world.call("GET", f"/relay-sources/{vov['id']}").json() == vov

    r = world.call("PATCH", f"/relay-sources/{vov['id']}", {"enabled": False, "name": "VOV 1"})
    assert r.status_code == 200, r.text
    assert (r.json()["enabled"], r.json()["name"]) == (False, "VOV 1")
    enabled = world.call("GET", "/relay-sources?enabled=true").json()
    assert [s["id"] for s in enabled] == [province["id"]]
    disabled = world.call("GET", "/relay-sources?enabled=false").json()
    assert [s["id"] for s in disabled] == [vov["id"]]
    # The same name twice in one org unit is refused; nothing changes.
    r = world.call("PATCH", f"/relay-sources/{vov['id']}", {"name": "Đài tỉnh"})
    assert r.status_code == 409 and "already has a relay source" in r.json()["detail"]
    world.create(expect=409, name="Đài tỉnh")

    assert world.call("DELETE", f"/relay-sources/{vov['id']}").status_code == 204
    r = world.call("GET", f"/relay-sources/{vov['id']}")
    assert (r.status_code, r.json()["detail"]) == (404, f"Relay source {vov['id']} does not exist.")

    stack = world.w.stack
    created = _audit(stack, "relay_source.create")
    assert [e.object_id for e in created] == [str(vov["id"]), str(province["id"])]
    assert created[0].details["addresses"] == ["203.162.4.190"]
    assert created[0].details["allow_private"] is False and created[0].org_unit_id == world.a
    (updated,) = _audit(stack, "relay_source.update")
    assert updated.details["before"] == {"enabled": True, "name": "VOV1"}
    assert updated.details["after"] == {"enabled": False, "name": "VOV 1"}
    (deleted,) = _audit(stack, "relay_source.delete")
    assert (deleted.object_id, deleted.details["url"]) == (str(vov["id"]), PUBLIC)
    assert deleted.username == "admin-a"


@pytest.mark.parametrize("url", REFUSED)
def test_a_non_public_address_is_refused_and_nothing_is_kept(world: World, url: str) -> None:
    r = world.call("POST", "/relay-sources", {"name": "Đài", "url": url, "org_unit_id": world.a})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "must be public" in detail and "allow_private" in detail, detail
    assert world.call("GET", "/relay-sources").json() == []
    assert _audit(world.w.stack, "relay_source.create") == []


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://203.162.4.190/vov1", "must start with http:// or https://"),
        ("https://", "names no host"),
        ("203.162.4.190/vov1", "must start with http:// or https://"),
        ("http://user:secret@203.162.4.190/vov1", "no user name or password"),
        ("http://203.162.4.190:99999/vov1", "not valid"),
        ("http://radio.invalid/vov1", "does not resolve"),
        ("http://" + "a" * 64 + ".vn/x", "not valid"),  # a DNS label longer than 63
    ],
)
def test_a_url_that_cannot_be_used_gets_a_sentence(world: World, url: str, words: str) -> None:
    r = world.call("POST", "/relay-sources", {"name": "Đài", "url": url, "org_unit_id": world.a})
    assert r.status_code == 422 and words in r.json()["detail"], r.text
    assert world.call("GET", "/relay-sources").json() == []


def test_allow_private_is_deliberate_and_audited(world: World) -> None:
    lan = world.create(name="Đài nội bộ", url="http://localhost:8000/stream", allow_private=True)
    assert lan["allow_private"] is True
    (entry,) = _audit(world.w.stack, "relay_source.create")
    assert entry.details["allow_private"] is True
    assert "127.0.0.1" in entry.details["private_addresses"]
    # Taking the permission away re-checks the URL: refused, and the row stays as it was.
    r = world.call("PATCH", f"/relay-sources/{lan['id']}", {"allow_private": False})
    assert r.status_code == 422 and "must be public" in r.json()["detail"]
    assert world.call("GET", f"/relay-sources/{lan['id']}").json()["allow_private"] is True
    # A new private URL on a source that does not allow it is refused too.
    public = world.create(name="VOV2", url="http://203.162.4.192/vov2")
    r = world.call("PATCH", f"/relay-sources/{public['id']}", {"url": "http://10.0.0.9/x"})
    assert r.status_code == 422
    r = world.call("PATCH", f"/relay-sources/{lan['id']}", {"url": PUBLIC, "allow_private": False})
    assert r.status_code == 200 and r.json()["allow_private"] is False, r.text
    (update,) = _audit(world.w.stack, "relay_source.update")
    assert update.details["before"] == {
        "url": "http://localhost:8000/stream",
        "allow_private": True,
    }
    assert update.details["private_addresses"] == []


def test_reach_and_permission(world: World) -> None:
    theirs = world.call(
        "POST", "/relay-sources",
        {"name": "Đài xã B", "url": PUBLIC, "org_unit_id": world.b}, headers=world.admin_b,
    ).json()  # fmt: skip
    ours = world.create()
    assert [s["id"] for s in world.call("GET", "/relay-sources").json()] == [ours["id"]]
    missing = 2_000_000_000
    for method, body in (("GET", None), ("PATCH", {"enabled": False}), ("DELETE", None)):
        foreign = world.call(method, f"/relay-sources/{theirs['id']}", body)
        absent = world.call(method, f"/relay-sources/{missing}", body)
        assert (foreign.status_code, absent.status_code) == (404, 404)
        assert foreign.json()["detail"].replace(str(theirs["id"]), "N") == absent.json()[
            "detail"
        ].replace(str(missing), "N")
    # An org unit outside the caller's subtree answers like a missing one.
    r = world.call("POST", "/relay-sources", {"name": "X", "url": PUBLIC, "org_unit_id": world.b})
    assert (r.status_code, r.json()["detail"]) == (422, f"Org unit {world.b} does not exist.")
    # Only admins manage relay sources.
    r = world.call("GET", "/relay-sources", headers=world.operator_a)
    assert r.status_code == 403
    r = world.call("POST", "/relay-sources", {"name": "X", "url": PUBLIC, "org_unit_id": world.a},
                   headers=world.operator_a)  # fmt: skip
    assert r.status_code == 403
    b_list = world.call("GET", "/relay-sources", headers=world.admin_b).json()
    assert [s["id"] for s in b_list] == [theirs["id"]]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x" * 201},
        {"url": "http://203.162.4.190/" + "a" * 2000},
        {"kind": "regional"},
        {"org_unit_id": 2**31},
        {"allow_private": "maybe"},
        {"surprise": 1},
    ],
)
def test_every_field_is_bounded(world: World, body: dict[str, Any]) -> None:
    base = {"name": "VOV1", "url": PUBLIC, "org_unit_id": world.a}
    r = world.call("POST", "/relay-sources", base | body)
    assert r.status_code == 422 and r.json()["detail"].startswith("Invalid request"), r.text
    assert world.call("GET", "/relay-sources").json() == []


# -- the address check itself ---------------------------------------------------------------


def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    def resolve(host: str, port: int) -> list[str]:
        assert (host, port) == ("radio.example.vn", 8000)
        return ["203.162.4.190", "2001:ee0:1::5", "10.0.0.7"]

    with pytest.raises(UrlRefused, match=r"resolves to 10\.0\.0\.7: .*must be public"):
        address.check_url("http://radio.example.vn:8000/x", allow_private=False, resolve=resolve)
    allowed = address.check_url(
        "http://radio.example.vn:8000/x", allow_private=True, resolve=resolve
    )
    assert allowed.addresses == ("203.162.4.190", "2001:ee0:1::5", "10.0.0.7")
    assert allowed.private == ("10.0.0.7",)
    public = address.check_url("https://203.162.4.190/vov1", allow_private=False)
    assert (public.port, public.private) == (443, ())


def test_the_lookup_is_bounded_and_never_blocks_the_event_loop() -> None:
    def slow(host: str, port: int) -> list[str]:
        time.sleep(1.0)
        return ["203.162.4.190"]

    async def run() -> tuple[str, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            await address.check_url_async(
                "http://radio.example.vn/x", allow_private=False, resolve=slow, timeout_s=0.3
            )
        except UrlRefused as exc:
            return str(exc), ticks
        finally:
            task.cancel()
        raise AssertionError("the slow lookup was not cut off")

    message, ticks = asyncio.run(run())
    assert "did not resolve within 0.3 seconds" in message
    assert ticks >= 5  # the loop kept running while the lookup waited
