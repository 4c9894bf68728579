"""The console's Relay sources page ("Nguồn tiếp âm") and the live page's choice of source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.conftest import BACKENDS
from tests.server.test_console import csrf_of, sign_in
from tests.server.test_console_admin import rows_of
from tests.server.test_permissions_fixtures import PermWorld, running_perm_world

STATION = "http://203.162.4.190:8000/vov1?key=BI-MAT-123"  # a key in the query: never shown


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PermWorld]:
    """Communes A and B with one user per role in A, on each database backend."""
    with running_perm_world(request.param, tmp_path) as w:
        yield w


def _post(client: TestClient, path: str, data: dict[str, Any]) -> Any:
    token = csrf_of(client, "/relay-sources")
    return client.post(path, data={"csrf": token, **data}, follow_redirects=False)


def test_only_administrators_open_the_page_and_see_the_menu_link(world: PermWorld) -> None:
    for role in ("viewer", "operator", "editor", "approver", "technician"):
        client = sign_in(world, f"{role}-a")
        r = client.get("/relay-sources")
        assert r.status_code == 403 and "Bạn không có quyền xem trang này" in r.text, role
        assert 'href="/relay-sources"' not in client.get("/").text
    admin = sign_in(world, "admin-a")
    home = admin.get("/").text
    assert 'href="/relay-sources"' in home and ">Nguồn tiếp âm<" in home


def test_add_list_disable_and_enable_a_source(world: PermWorld) -> None:
    w = world
    assert w.a is not None and w.b is not None
    w.admin("POST", "/relay-sources", {"name": "Đài xã B", "url": "http://203.162.4.191/b",
                                       "org_unit_id": w.b.commune}, expect=201)  # fmt: skip
    admin = sign_in(w, "admin-a")
    page = admin.get("/relay-sources")
    assert page.status_code == 200 and 'id="relay-none"' in page.text  # B's is not A's
    for kind in ("Đài quốc gia", "Đài tỉnh", "Khác"):
        assert f">{kind}</option>" in page.text
    r = _post(admin, "/relay-sources", {"name": "VOV1", "url": STATION, "kind": "national",
                                        "org_unit_id": w.a.commune})  # fmt: skip
    assert (r.status_code, r.headers["location"]) == (303, "/relay-sources?done=added")
    page = admin.get("/relay-sources?done=added").text
    assert "Đã thêm nguồn tiếp âm." in page
    [row] = rows_of(page, "relay-list")
    assert "VOV1" in row and "Đài quốc gia" in row and "203.162.4.190:8000" in row
    assert "Đang dùng" in row
    assert "BI-MAT" not in page and "/vov1" not in page  # the host only, never path or query
    source_id = int(row.split('data-relay-source-id="', 1)[1].split('"', 1)[0])
    [listed] = [s for s in w.admin("GET", "/relay-sources") if s["id"] == source_id]
    assert listed["url"] == STATION and listed["org_unit_id"] == w.a.commune

    # The live page offers it to commune A's operator, by name, in a select (no URL field).
    operator = sign_in(w, "operator-a")
    live = operator.get("/live").text
    assert f'<option value="{source_id}">VOV1</option>' in live
    assert 'name="url"' not in live and "Đài xã B" not in live

    r = _post(admin, f"/relay-sources/{source_id}/enabled", {"enabled": "false"})
    assert (r.status_code, r.headers["location"]) == (303, "/relay-sources?done=disabled")
    [row] = rows_of(admin.get("/relay-sources").text, "relay-list")
    assert "Đã tắt" in row and ">Bật<" in row
    live = operator.get("/live").text
    assert f'value="{source_id}"' not in live and 'id="live-no-relay"' in live
    r = _post(admin, f"/relay-sources/{source_id}/enabled", {"enabled": "true"})
    assert r.headers["location"] == "/relay-sources?done=enabled"
    [row] = rows_of(admin.get("/relay-sources").text, "relay-list")
    assert "Đang dùng" in row


def test_bad_input_shows_the_form_again_and_changes_nothing(world: PermWorld) -> None:
    w = world
    assert w.a is not None and w.b is not None
    admin = sign_in(w, "admin-a")
    for url, words in (("http://10.0.0.9/radio", "10.0.0.9"), ("ftp://radio.vn/x", "http"),
                       ("http://user:pw@203.162.4.190/x", "password")):  # fmt: skip
        r = _post(admin, "/relay-sources", {"name": "Đài", "url": url, "org_unit_id": w.a.commune})
        assert r.status_code == 422, url
        assert "Không thêm được nguồn tiếp âm." in r.text and words in r.text, url
        assert 'value="Đài"' in r.text  # the name is kept; the URL is not echoed
    r = _post(admin, "/relay-sources", {"name": " ", "url": STATION, "org_unit_id": w.a.commune})
    assert r.status_code == 422 and "Give the relay source a name" in r.text
    # Another commune's unit, or its source: answered like missing ones.
    r = _post(admin, "/relay-sources", {"name": "X", "url": STATION, "org_unit_id": w.b.commune})
    assert r.status_code in (404, 422) and "Không thêm được nguồn tiếp âm." in r.text
    body = {"name": "Đài B", "url": STATION, "org_unit_id": w.b.commune}
    theirs = w.admin("POST", "/relay-sources", body, expect=201)
    r = _post(admin, f"/relay-sources/{theirs['id']}/enabled", {"enabled": "false"})
    assert r.status_code == 404
    assert w.admin("GET", f"/relay-sources/{theirs['id']}")["enabled"] is True
    # Without the page's CSRF token nothing happens.
    r = admin.post("/relay-sources", data={"csrf": "sai", "name": "Y", "url": STATION},
                   follow_redirects=False)  # fmt: skip
    assert r.status_code in (400, 403)
    assert 'id="relay-none"' in admin.get("/relay-sources").text
