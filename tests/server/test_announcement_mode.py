"""Announcement mode (issue 17): the API stores it, the planner puts it on devices' items."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from schedules import ClipRef, Priority, ProgrammeSpec
from schedules.expand import expand_programme
from tests.server.test_console import csrf_of, sign_in
from tests.server.test_permissions_fixtures import PermWorld
from tests.server.test_programmes_fixtures import NOW, World, one_off, wait, world

__all__ = ["world"]  # fixture, imported for pytest

ANNOUNCE_KEYS = {"announce", "duck_db", "duck_ramp_ms"}
CLIP = ClipRef(sha256="a" * 64, size_bytes=1000, duration_s=60.0)


def _patch(w: World, path: str, body: dict[str, Any]) -> Any:
    return w.client.patch(f"/api/v1{path}", json=body, headers=w.headers)


def _setup(w: World, zones: int = 1) -> tuple[int, int, list[int], int]:
    """(org unit, device in the first of `zones` new zones, those zones, a clip)."""
    org = w.org()
    device_id, _uid, _password = w.device(org)
    zone_ids = [w.zone(org, device_ids=[device_id] if i == 0 else []) for i in range(zones)]
    return org, device_id, zone_ids, w.clip().id


def _items(w: World, device_id: int) -> list[dict[str, Any]]:
    return list(w.get(f"/devices/{device_id}/schedule")["items"])


def _of(items: list[dict[str, Any]], programme_id: int) -> list[dict[str, Any]]:
    return [item for item in items if item["programme_id"] == programme_id]


def test_the_programme_api_round_trips_the_announcement_fields(world: World) -> None:
    _org, _device, zones, clip = _setup(world)
    plain = world.programme(**one_off([clip], zones, at=NOW + timedelta(hours=2)))
    assert (plain["announcement_mode"], plain["duck_db"], plain["duck_ramp_ms"]) == (None, -18, 300)
    body = one_off([clip], zones, at=NOW + timedelta(hours=3), announcement_mode="duck",
                   duck_db=-24.5, duck_ramp_ms=450)  # fmt: skip
    made = world.programme(**body)
    assert (made["announcement_mode"], made["duck_db"], made["duck_ramp_ms"]) == (
        "duck",
        -24.5,
        450,
    )
    shown = world.get(f"/programmes/{made['id']}")
    assert (shown["announcement_mode"], shown["duck_db"], shown["duck_ramp_ms"]) == (
        "duck", -24.5, 450,
    )  # fmt: skip
    # null clears the mode (back to the zones'); the level and ramps stay unless given.
    r = _patch(world, f"/programmes/{made['id']}", {"announcement_mode": None, "duck_db": None})
    assert r.status_code == 200, r.text
    assert (r.json()["announcement_mode"], r.json()["duck_db"], r.json()["duck_ramp_ms"]) == (
        None, -24.5, 450,
    )  # fmt: skip
    r = _patch(world, f"/programmes/{made['id']}", {"announcement_mode": "cut", "duck_db": -6})
    assert (r.json()["announcement_mode"], r.json()["duck_db"]) == ("cut", -6)
    # An edit that leaves them out keeps them.
    r = _patch(world, f"/programmes/{made['id']}", {"title": "Đổi tên"})
    assert (r.json()["announcement_mode"], r.json()["duck_db"], r.json()["duck_ramp_ms"]) == (
        "cut", -6, 450,
    )  # fmt: skip


BAD_PROGRAMME_FIELDS: list[dict[str, Any]] = [
    {"announcement_mode": "loud"},
    {"announcement_mode": 1},
    {"announcement_mode": ""},
    {"duck_db": -2.9},
    {"duck_db": -60.1},
    {"duck_db": 6},
    {"duck_db": "quiet"},
    {"duck_db": None},
    {"duck_db": [-18]},
    {"duck_ramp_ms": 199},
    {"duck_ramp_ms": 501},
    {"duck_ramp_ms": 300.5},
    {"duck_ramp_ms": -300},
    {"duck_ramp_ms": 10**30},
    {"duck_ramp_ms": {"ms": 300}},
]


def test_garbage_announcement_fields_get_a_readable_422(world: World) -> None:
    _org, _device, zones, clip = _setup(world)
    base = one_off([clip], zones, at=NOW + timedelta(hours=2))
    draft = world.programme(**base)
    for bad in BAD_PROGRAMME_FIELDS:
        (name,) = bad
        for answer in (
            world.client.post(
                "/api/v1/programmes", json={"org_unit_id": world.first_org, **base, **bad},
                headers=world.headers,
            ),
            world.client.post(
                "/api/v1/programmes/check", json={"org_unit_id": world.first_org, **base, **bad},
                headers=world.headers,
            ),
        ):  # fmt: skip
            assert answer.status_code == 422, (bad, answer.text)
            assert name in answer.json()["detail"], answer.text
        if bad[name] is not None:  # null in an edit means "leave as is" for the numbers
            answer = _patch(world, f"/programmes/{draft['id']}", bad)
            assert answer.status_code == 422, (bad, answer.text)
            assert name in answer.json()["detail"], answer.text
    kept = world.get(f"/programmes/{draft['id']}")
    assert (kept["announcement_mode"], kept["duck_db"], kept["duck_ramp_ms"]) == (None, -18, 300)
    # The bounds themselves are accepted.
    for edge in ({"duck_db": -60, "duck_ramp_ms": 200}, {"duck_db": -3, "duck_ramp_ms": 500}):
        answer = _patch(world, f"/programmes/{draft['id']}", edge)
        assert answer.status_code == 200, answer.text


def test_the_zone_api_round_trips_its_mode_and_refuses_garbage(world: World) -> None:
    org = world.org()
    zone = world.zone(org)
    assert world.get(f"/zones/{zone}")["announcement_mode"] == "cut"
    made = world.post("/zones", {"org_unit_id": org, "name": "Chợ", "announcement_mode": "duck"},
                      expect=201)  # fmt: skip
    assert made["announcement_mode"] == "duck"
    r = _patch(world, f"/zones/{zone}", {"announcement_mode": "duck"})
    assert r.status_code == 200 and r.json()["announcement_mode"] == "duck", r.text
    assert world.get(f"/zones/{zone}")["announcement_mode"] == "duck"
    r = _patch(world, f"/zones/{zone}", {"name": "Thôn mới"})
    assert r.json()["announcement_mode"] == "duck"
    for bad in ("loud", "", 1, ["duck"], {"mode": "duck"}):
        r = _patch(world, f"/zones/{zone}", {"announcement_mode": bad})
        assert r.status_code == 422 and "announcement_mode" in r.json()["detail"], r.text
        body = {"org_unit_id": org, "name": "X", "announcement_mode": bad}
        r = world.client.post("/api/v1/zones", json=body, headers=world.headers)
        assert r.status_code == 422 and "announcement_mode" in r.json()["detail"], r.text
    assert world.get(f"/zones/{zone}")["announcement_mode"] == "duck"


def test_a_programme_set_to_duck_sends_duck_items_with_its_level_and_ramps(world: World) -> None:
    _org, device_id, zones, clip = _setup(world)
    ducking = world.approved(
        **one_off(
            [clip],
            zones,
            at=NOW + timedelta(hours=2),
            announcement_mode="duck",
            duck_db=-24,
            duck_ramp_ms=450,
        )
    )
    default_level = world.approved(**one_off([clip], zones, at=NOW + timedelta(hours=3),
                                             announcement_mode="duck"))  # fmt: skip
    items = _items(world, device_id)
    (item,) = _of(items, ducking["id"])
    assert (item["announce"], item["duck_db"], item["duck_ramp_ms"]) == ("duck", -24, 450)
    (plain_level,) = _of(items, default_level["id"])
    # At the defaults the level and ramps stay out of the JSON; the agent reads -18 dB, 300 ms.
    assert plain_level["announce"] == "duck"
    assert not {"duck_db", "duck_ramp_ms"} & set(plain_level)


def test_a_programme_without_a_mode_ducks_only_when_all_its_zones_do(world: World) -> None:
    _org, device_id, zones, clip = _setup(world, zones=2)
    for zone in zones:
        assert _patch(world, f"/zones/{zone}", {"announcement_mode": "duck"}).status_code == 200
    both = world.approved(**one_off([clip], zones, at=NOW + timedelta(hours=2), duck_db=-30))
    (item,) = _of(_items(world, device_id), both["id"])
    assert (item["announce"], item["duck_db"]) == ("duck", -30)
    assert "duck_ramp_ms" not in item
    # One cutting zone is enough: the programme's items cut everywhere.
    assert _patch(world, f"/zones/{zones[1]}", {"announcement_mode": "cut"}).status_code == 200
    assert wait(lambda: not ANNOUNCE_KEYS & set(_of(_items(world, device_id), both["id"])[0]))
    assert _patch(world, f"/zones/{zones[1]}", {"announcement_mode": "duck"}).status_code == 200
    assert wait(lambda: _of(_items(world, device_id), both["id"])[0].get("announce") == "duck")
    # The programme's own mode wins over its zones'.
    own = world.approved(**one_off([clip], zones, at=NOW + timedelta(hours=3),
                                   announcement_mode="cut"))  # fmt: skip
    (item,) = _of(_items(world, device_id), own["id"])
    assert not ANNOUNCE_KEYS & set(item)


def test_an_emergency_never_ducks(world: World) -> None:
    _org, device_id, zones, clip = _setup(world)
    assert _patch(world, f"/zones/{zones[0]}", {"announcement_mode": "duck"}).status_code == 200
    at = NOW + timedelta(hours=2)
    told = world.approved(**one_off([clip], zones, at=at, priority="emergency",
                                    announcement_mode="duck", duck_db=-12))  # fmt: skip
    by_zone = world.approved(**one_off([clip], zones, at=NOW + timedelta(hours=3),
                                       priority="emergency"))  # fmt: skip
    items = _items(world, device_id)
    for programme in (told, by_zone):
        (item,) = _of(items, programme["id"])
        assert item["priority"] == "emergency"
        assert not ANNOUNCE_KEYS & set(item), item


def test_a_schedule_without_ducking_is_unchanged(world: World) -> None:
    _org, device_id, zones, clip = _setup(world)
    before = world.approved(**one_off([clip], zones, at=NOW + timedelta(hours=2)))
    cutting = world.approved(
        **one_off(
            [clip],
            zones,
            at=NOW + timedelta(hours=3),
            announcement_mode="cut",
            duck_db=-40,
            duck_ramp_ms=500,
        )
    )
    document = world.get(f"/devices/{device_id}/schedule")
    (plain,) = _of(document["items"], before["id"])
    (cut,) = _of(document["items"], cutting["id"])
    # Exactly the item keys a schedule had before issue 17: nothing new in the JSON.
    assert set(plain) == set(cut) == {
        "item_id", "programme_id", "start", "end", "clips", "priority", "volume",
    }  # fmt: skip
    assert "announce" not in str(document) and "duck" not in str(document)


def test_the_expansion_carries_ducking_but_never_on_an_emergency() -> None:
    spec = ProgrammeSpec(
        id=1, title="t", priority=Priority.PRIORITY, items=(CLIP,), start=NOW, zone_ids=(1,),
        announce="duck", duck_db=-9, duck_ramp_ms=250,
    )  # fmt: skip
    window = {"window_start": NOW, "window_end": NOW + timedelta(days=1)}
    (item,) = expand_programme(spec, **window)
    assert (item.announce, item.duck_db, item.duck_ramp_ms, item.ducks) == ("duck", -9, 250, True)
    emergency = spec.model_copy(update={"priority": Priority.EMERGENCY})
    (item,) = expand_programme(emergency, **window)
    assert not ANNOUNCE_KEYS & set(item.model_dump(mode="json"))


def test_the_console_sets_and_shows_the_modes(perm_world: PermWorld) -> None:
    w = perm_world
    assert w.a is not None
    admin = sign_in(w, "admin-a")
    form = admin.get("/programmes/new").text
    for shown in ("Khi chen ngang chương trình khác", "Theo vùng phát",
                  "Cắt ngang (tạm dừng chương trình đang phát)",
                  "Hạ nhỏ tiếng chương trình đang phát", 'name="duck_drop"'):  # fmt: skip
        assert shown in form, shown
    # A zone's mode, set from the zones page; garbage and a missing token change nothing.
    token = csrf_of(admin, "/zones")
    path = f"/zones/{w.a.zone}/announcement"
    r = admin.post(path, data={"csrf": token, "announcement_mode": "duck"}, follow_redirects=False)
    assert r.status_code == 303 and "done=saved" in r.headers["location"], r.text
    assert w.admin("GET", f"/zones/{w.a.zone}")["announcement_mode"] == "duck"
    row = admin.get("/zones?done=saved").text.split(f'id="zone-{w.a.zone}"')[1].split("</tr>")[0]
    assert 'value="duck" checked' in row
    for data in ({"csrf": token, "announcement_mode": "loud"}, {"announcement_mode": "cut"}):
        assert admin.post(path, data=data, follow_redirects=False).status_code in (403, 422)
    assert w.admin("GET", f"/zones/{w.a.zone}")["announcement_mode"] == "duck"
    viewer = sign_in(w, "editor-a").get("/zones").text
    assert f'action="{path}"' not in viewer and "Hạ nhỏ tiếng chương trình đang phát" in viewer
    # The programme page says what its items do.
    body = {"title": "Thông báo", "clip_ids": [w.a.clip], "zone_ids": [w.a.zone],
            "start": w.start_at(), "org_unit_id": w.a.commune, "duck_db": -24}  # fmt: skip
    by_zone = w.admin("POST", "/programmes", body, expect=201)["id"]
    shown = admin.get(f"/programmes/{by_zone}").text.split('id="announce-mode">')[1]
    assert shown.startswith("Theo vùng phát: Hạ nhỏ tiếng chương trình đang phát: giảm 24 dB")
    own = w.admin("POST", "/programmes", {**body, "announcement_mode": "cut"}, expect=201)["id"]
    shown = admin.get(f"/programmes/{own}").text.split('id="announce-mode">')[1]
    assert shown.startswith("Cắt ngang (tạm dừng chương trình đang phát)</dd>")
