"""Org tree, zones, devices and auth over HTTP, on every database backend."""

from __future__ import annotations

from loa_testkit.stack import Stack


def _tree(api: Stack) -> dict[str, int]:
    c, h = api.client, api.headers
    province = c.post("/api/v1/org-units", json={"name": "Tỉnh A", "kind": "province"}, headers=h)
    assert province.status_code == 201, province.text
    pid = province.json()["id"]
    district = c.post(
        "/api/v1/org-units",
        json={"name": "Huyện B", "kind": "district", "parent_id": pid},
        headers=h,
    ).json()["id"]
    commune = c.post(
        "/api/v1/org-units",
        json={"name": "Xã C", "kind": "commune", "parent_id": district},
        headers=h,
    ).json()["id"]
    village = c.post(
        "/api/v1/org-units",
        json={"name": "Thôn D", "kind": "village", "parent_id": commune},
        headers=h,
    ).json()["id"]
    return {"province": pid, "district": district, "commune": commune, "village": village}


def test_healthz(api: Stack) -> None:
    r = api.client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["database"] == "ok"


def test_api_requires_a_token(api: Stack) -> None:
    r = api.client.get("/api/v1/devices")
    assert r.status_code == 401
    assert "Sign in" in r.json()["detail"]
    r = api.client.get("/api/v1/devices", headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 401


def test_wrong_password_is_refused(api: Stack) -> None:
    r = api.client.post("/api/v1/auth/token", data={"username": "admin", "password": "nope"})
    assert r.status_code == 401
    assert r.json()["detail"] == "Wrong username or password."


def test_logout_revokes_the_token(api: Stack) -> None:
    assert api.client.post("/api/v1/auth/logout", headers=api.headers).status_code == 204
    assert api.client.get("/api/v1/users/me", headers=api.headers).status_code == 401


def test_org_tree_of_any_depth(api: Stack) -> None:
    ids = _tree(api)
    r = api.client.get(f"/api/v1/org-units?parent_id={ids['commune']}", headers=api.headers)
    assert [u["name"] for u in r.json()] == ["Thôn D"]
    # Moving a unit under its own descendant would make a cycle.
    r = api.client.patch(
        f"/api/v1/org-units/{ids['province']}",
        json={"parent_id": ids["village"]},
        headers=api.headers,
    )
    assert r.status_code == 422
    assert "descendants" in r.json()["detail"]
    # The legacy district disappears: the commune moves up to the province (2025 reform).
    r = api.client.patch(
        f"/api/v1/org-units/{ids['commune']}",
        json={"parent_id": ids["province"]},
        headers=api.headers,
    )
    assert r.status_code == 200 and r.json()["parent_id"] == ids["province"]
    assert (
        api.client.delete(f"/api/v1/org-units/{ids['district']}", headers=api.headers).status_code
        == 204
    )
    r = api.client.delete(f"/api/v1/org-units/{ids['province']}", headers=api.headers)
    assert r.status_code == 409
    assert "child org units" in r.json()["detail"]


def test_register_device_zone_and_credentials(api: Stack) -> None:
    ids = _tree(api)
    zone = api.client.post(
        "/api/v1/zones", json={"org_unit_id": ids["village"], "name": "Chợ"}, headers=api.headers
    ).json()
    r = api.client.post(
        "/api/v1/devices",
        json={
            "uid": "thon-d-01",
            "name": "Cụm loa 01",
            "org_unit_id": ids["village"],
            "firmware_profile": "rpi4-usb-pa",
            "zone_ids": [zone["id"]],
        },
        headers=api.headers,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["credentials"]["username"] == "thon-d-01"
    assert len(body["credentials"]["password"]) >= 16
    assert 'device_id = "thon-d-01"' in body["credentials"]["agent_config_toml"]
    assert body["device"]["zone_ids"] == [zone["id"]]
    assert body["device"]["online"] is False
    # The password never comes back.
    device = api.client.get(f"/api/v1/devices/{body['device']['id']}", headers=api.headers).json()
    assert "password" not in str(device)
    # Same uid twice.
    r = api.client.post(
        "/api/v1/devices",
        json={
            "uid": "thon-d-01",
            "name": "x",
            "org_unit_id": ids["village"],
            "firmware_profile": "sim",
        },
        headers=api.headers,
    )
    assert r.status_code == 422 and "already registered" in r.json()["detail"]
    page = api.client.get(f"/api/v1/devices?zone_id={zone['id']}", headers=api.headers).json()
    assert page["total"] == 1


def test_zone_devices_must_be_in_the_zone_subtree(api: Stack) -> None:
    ids = _tree(api)
    other = api.client.post(
        "/api/v1/org-units", json={"name": "Tỉnh Khác", "kind": "province"}, headers=api.headers
    ).json()["id"]
    dev = api.client.post(
        "/api/v1/devices",
        json={"uid": "khac-01", "name": "x", "org_unit_id": other, "firmware_profile": "sim"},
        headers=api.headers,
    ).json()["device"]
    zone = api.client.post(
        "/api/v1/zones",
        json={"org_unit_id": ids["commune"], "name": "Toàn xã"},
        headers=api.headers,
    ).json()
    r = api.client.put(
        f"/api/v1/zones/{zone['id']}/devices", json={"device_ids": [dev["id"]]}, headers=api.headers
    )
    assert r.status_code == 422
    assert "khac-01" in r.json()["detail"]
