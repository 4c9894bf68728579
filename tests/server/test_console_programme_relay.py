"""The new-programme form's relay items: the sources it offers and the units they work for."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.console.i18n import LANG_COOKIE
from tests.server.conftest import BACKENDS
from tests.server.test_console import sign_in
from tests.server.test_permissions_fixtures import PermWorld, running_perm_world


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PermWorld]:
    """Communes A and B under province P, one user per role in A, on each database backend."""
    with running_perm_world(request.param, tmp_path) as w:
        yield w


def _source(w: PermWorld, name: str, org_unit_id: int, *, enabled: bool = True) -> int:
    body = {"name": name, "url": f"http://203.162.4.{190 + w.next()}/{name}",
            "org_unit_id": org_unit_id}  # fmt: skip
    source_id = int(w.admin("POST", "/relay-sources", body, expect=201)["id"])
    if not enabled:
        w.admin("PATCH", f"/relay-sources/{source_id}", {"enabled": False}, expect=200)
    return source_id


def _relay_options(page: str) -> dict[int, int]:
    """The relay template's select: source id -> its org unit."""
    template = page.split('<template id="relay-item">', 1)[1].split("</template>", 1)[0]
    select = template.split('name="relay_source_id"', 1)[1].split("</select>", 1)[0]
    found = re.findall(r'<option value="(\d+)" data-unit="(\d+)">', select)
    return {int(i): int(u) for i, u in found}


def test_the_form_offers_enabled_sources_of_the_unit_and_above(world: PermWorld) -> None:
    w = world
    assert w.a is not None and w.b is not None
    province = _source(w, "VOV1", w.province)
    own = _source(w, "Đài xã A", w.a.commune)
    village = _source(w, "Loa thôn A", w.a.village)
    _source(w, "Đài xã B", w.b.commune)
    off = _source(w, "Đài cũ", w.a.commune, enabled=False)
    editor = sign_in(w, "editor-a")
    page = editor.get("/programmes/new")
    assert page.status_code == 200
    options = _relay_options(page.text)
    assert options == {province: w.province, own: w.a.commune, village: w.a.village}
    assert off not in options and "Đài xã B" not in page.text and "Đài cũ" not in page.text
    assert 'id="add-relay">Thêm tiếp âm<' in page.text
    assert "Phát khi mất tín hiệu tiếp âm" in page.text
    assert 'min="1" max="240"' in page.text and "Thời lượng (phút, từ 1 đến 240)" in page.text
    # The fallback select holds the same clips as the clip checkboxes.
    boxes = set(re.findall(r'name="clip_ids" value="(\d+)"', page.text))
    template = page.text.split('<template id="relay-item">', 1)[1]
    fallback = template.split('name="fallback_clip_id">', 1)[1].split("</select>", 1)[0]
    assert boxes and set(re.findall(r'<option value="(\d+)"', fallback)) == boxes
    # Which owners may use which source: a commune-owned programme cannot relay the village's.
    found = re.search(r"data-units-above='([^']*)'", page.text)
    assert found is not None
    above = {int(k): v for k, v in json.loads(html.unescape(found.group(1))).items()}
    assert above[w.a.commune] == [w.a.commune, w.province]
    assert above[w.a.village] == [w.a.village, w.a.commune, w.province]
    assert w.b.commune not in above


def test_without_a_usable_source_the_form_says_why(world: PermWorld) -> None:
    w = world
    assert w.b is not None
    _source(w, "Đài xã B", w.b.commune)
    page = sign_in(w, "editor-a").get("/programmes/new").text
    assert 'id="add-relay"' not in page and 'id="relay-none"' in page
    assert "Muốn tiếp âm cần có một nguồn tiếp âm đang bật" in page
    assert _relay_options(page) == {}


def test_the_form_in_english(world: PermWorld) -> None:
    w = world
    _source(w, "VOV1", w.province)
    editor = sign_in(w, "editor-a")
    editor.cookies.set(LANG_COOKIE, "en")
    page = editor.get("/programmes/new").text
    assert ">Add a relay<" in page and "Plays when the relay signal is lost" in page


def test_the_body_the_form_sends_is_kept_in_order_and_bounds_are_enforced(
    world: PermWorld,
) -> None:
    w = world
    assert w.a is not None
    vov = _source(w, "VOV1", w.province)
    second = w.db_clip(w.a.commune)
    relay = {"kind": "relay", "relay_source_id": vov, "duration_s": 30 * 60,
             "fallback_clip_id": w.a.clip}  # fmt: skip
    body = {"title": "Tiếp âm buổi sáng", "zone_ids": [w.a.zone],
            "start": "2031-03-03T22:00:00Z",
            "items": [{"kind": "clip", "clip_id": w.a.clip}, relay,
                      {"kind": "clip", "clip_id": second}]}  # fmt: skip
    headers = w.headers("editor")
    for minutes in (0, 500):
        bad = {**body, "items": [{**relay, "duration_s": minutes * 60}]}
        r = w.client.post("/api/v1/programmes", json=bad, headers=headers)
        assert r.status_code == 422 and r.json()["detail"], r.text
    r = w.client.post("/api/v1/programmes", json=body, headers=headers)
    assert r.status_code == 201, r.text
    got = w.client.get(f"/api/v1/programmes/{r.json()['id']}", headers=headers).json()
    kinds = [(i["kind"], (i.get("clip") or {}).get("id"), i.get("relay")) for i in got["items"]]
    assert [k for k, _c, _r in kinds] == ["clip", "relay", "clip"]
    assert kinds[0][1] == w.a.clip and kinds[2][1] == second
    assert kinds[1][2]["relay_source_id"] == vov and kinds[1][2]["duration_s"] == 1800
