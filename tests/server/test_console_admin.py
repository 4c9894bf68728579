"""The console's Users and Audit log pages: who may open them, what they show, their reach."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import BACKENDS
from tests.server.test_console import csrf_of, sign_in
from tests.server.test_permissions_fixtures import PASSWORD, PermWorld, running_perm_world


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PermWorld]:
    """Communes A and B with one user per role in A, on each database backend."""
    with running_perm_world(request.param, tmp_path) as w:
        yield w


def rows_of(html: str, table: str) -> list[str]:
    """The <tr> elements of a table's body."""
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr\b.*?</tr>", body.split("<tbody>", 1)[1], flags=re.S)


def test_only_administrators_open_the_pages_and_see_the_menu_links(world: PermWorld) -> None:
    for role in ("viewer", "operator", "editor", "approver", "technician"):
        client = sign_in(world, f"{role}-a")
        for path in ("/users", "/audit"):
            r = client.get(path)
            assert r.status_code == 403, (role, path)
            assert "Bạn không có quyền xem trang này" in r.text
        home = client.get("/").text
        assert 'href="/users"' not in home and 'href="/audit"' not in home
    admin = sign_in(world, "admin-a")
    home = admin.get("/").text
    assert 'href="/users"' in home and ">Người dùng<" in home and ">Nhật ký<" in home


def test_a_user_created_from_the_console_is_listed_and_in_the_audit_log(world: PermWorld) -> None:
    w = world
    assert w.a is not None
    admin = sign_in(w, "admin-a")
    body = {
        "username": "le.van.tam",
        "password": PASSWORD,
        "full_name": "Lê Văn Tâm",
        "role": "operator",
        "org_unit_id": w.a.village,
        "can_emergency": True,
    }
    # What admin.js sends: JSON with the page's CSRF token in the header.
    r = admin.post("/api/v1/users", json=body, headers={"X-CSRF-Token": csrf_of(admin, "/users")})
    assert r.status_code == 201, r.text
    new_id = r.json()["id"]
    sign_in(w, "le.van.tam")  # gives the user a last sign-in

    page = admin.get("/users")
    assert page.status_code == 200
    row = next(r for r in rows_of(page.text, "user-list") if f'data-user-id="{new_id}"' in r)
    for text in ("le.van.tam", "Lê Văn Tâm", "Trực phát thanh", "Được phép"):
        assert text in row, text
    assert "Chưa bao giờ" not in row  # signed in just now
    assert f'data-url="/api/v1/users/{new_id}/password"' in row

    audit = admin.get("/audit")
    assert audit.status_code == 200
    created = [r for r in rows_of(audit.text, "audit-list") if 'data-action="user.create"' in r]
    assert created and "Thêm người dùng" in created[0]
    assert "le.van.tam (Trực phát thanh)" in created[0]
    assert "admin-a" in created[0]
    # The family filter keeps user actions and drops the others.
    users_only = admin.get("/audit", params={"family": "user"}).text
    assert all('data-action="user.' in r for r in rows_of(users_only, "audit-list")), users_only[
        :500
    ]
    assert "le.van.tam (Trực phát thanh)" in users_only
    assert "le.van.tam (Trực phát thanh)" not in admin.get("/audit", params={"family": "live"}).text
    # The user filter: the new user's own entries are their sign-in, not the creation.
    theirs = admin.get("/audit", params={"user_id": new_id}).text
    actions = re.findall(r'data-action="([^"]+)"', theirs)
    assert actions and set(actions) == {"auth.login"}, actions


def test_a_commune_admin_sees_only_their_own_subtree(world: PermWorld) -> None:
    w = world
    assert w.a is not None and w.b is not None
    foreign = w.user(w.b.commune, role="editor")
    foreign_name = w.admin("GET", f"/users/{foreign}", expect=200)["username"]
    mine = w.user(w.a.village, role="viewer")
    mine_name = w.admin("GET", f"/users/{mine}", expect=200)["username"]
    admin = sign_in(w, "admin-a")
    users = admin.get("/users").text
    assert f'data-username="{mine_name}"' in users
    assert f'data-username="{foreign_name}"' not in users
    assert f'data-username="{w.admin("GET", "/users/me", expect=200)["username"]}"' not in users
    assert "Xã Bình Minh" not in users  # commune B is not offered as an org unit
    audit = admin.get("/audit").text
    assert f"{mine_name} (Chỉ xem)" in audit and f"{foreign_name} (Biên tập)" not in audit
    assert f'<option value="{foreign}"' not in audit
    assert admin.get("/audit", params={"user_id": foreign}).status_code == 404


def test_show_more_widens_the_page_and_bad_filters_are_ignored(world: PermWorld) -> None:
    admin = sign_in(world, "admin-a")
    first = admin.get("/audit", params={"limit": 1})
    assert first.status_code == 200
    assert len(rows_of(first.text, "audit-list")) == 1
    more = re.search(r'id="audit-more" href="([^"]+)"', first.text)
    assert more is not None and "limit=101" in more.group(1)
    wider = admin.get(more.group(1).replace("&amp;", "&").split("#", 1)[0])
    assert len(rows_of(wider.text, "audit-list")) > 1
    assert admin.get("/audit", params={"family": "nonsense"}).status_code == 200
    # The filter form sends its empty fields: they mean "any".
    empty = admin.get("/audit", params={"family": "", "user_id": "", "start": "", "end": ""})
    assert empty.status_code == 200 and len(rows_of(empty.text, "audit-list")) > 1
    for bad in ({"user_id": "abc"}, {"user_id": "0"}, {"start": "31/02/2031"}):
        r = admin.get("/audit", params=bad)
        assert r.status_code == 422 and "Đã có lỗi xảy ra" in r.text, bad
    assert admin.get("/audit", params={"limit": 0}).status_code == 422
    reversed_dates = admin.get("/audit", params={"start": "2031-03-02", "end": "2031-03-01"})
    assert reversed_dates.status_code == 200 and "Không có mục nào." in reversed_dates.text
