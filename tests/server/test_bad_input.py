"""Every API route answers garbage with a 4xx and a readable `detail`, never a 5xx.

The route list comes from the app's OpenAPI schema, so a new route is covered without
editing this file.
"""

from __future__ import annotations

import re

import pytest

from loa_testkit.stack import Stack

PATH_GARBAGE = ["0", "-1", "99999999999999999999", "abc", "%00", "1e9"]
BODY_GARBAGE: list[tuple[bytes, str]] = [
    (b"", "application/json"),
    (b"{not json", "application/json"),
    (b"[]", "application/json"),
    (b'"string"', "application/json"),
    (
        b'{"name": 5, "kind": [], "parent_id": "x", "uid": null, "device_ids": "all"}',
        "application/json",
    ),
    (b'{"org_unit_id": 1e400, "volume": 1000000}', "application/json"),
    (b"\xff\xfe\x00garbage", "application/octet-stream"),
    (b"a=b&c", "application/x-www-form-urlencoded"),
]


def _routes(api: Stack) -> list[tuple[str, str]]:
    paths = api.app.openapi()["paths"]
    return [(m.upper(), p) for p, ops in paths.items() if p.startswith("/api/") for m in ops]


def _fill(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path)


def _check(resp, where: str) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code < 500, f"{where}: {resp.status_code} {resp.text[:300]}"
    if resp.status_code >= 400:
        detail = resp.json().get("detail")
        assert isinstance(detail, str) and detail, f"{where}: detail is not a sentence: {detail!r}"


@pytest.mark.parametrize("auth", [True, False], ids=["signed-in", "anonymous"])
def test_garbage_never_causes_a_server_error(api: Stack, auth: bool) -> None:
    headers = api.headers if auth else {}
    routes = _routes(api)
    assert len(routes) >= 15
    for method, path in routes:
        for value in PATH_GARBAGE if "{" in path else ["-"]:
            url = _fill(path, value)
            for body, ctype in BODY_GARBAGE:
                resp = api.client.request(
                    method, url, content=body, headers={**headers, "Content-Type": ctype}
                )
                _check(resp, f"{method} {url} body={body[:30]!r}")
            resp = api.client.request(
                method, url + "?limit=-5&offset=abc&online=maybe", headers=headers
            )
            _check(resp, f"{method} {url} with bad query")


def test_validation_errors_read_as_sentences(api: Stack) -> None:
    r = api.client.post("/api/v1/org-units", json={"kind": "planet"}, headers=api.headers)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("Invalid request: name: Field required")
    assert "kind" in r.json()["detail"]
