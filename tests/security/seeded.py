"""A running server (real SQLite, its own Mosquitto) holding one object of each kind.

Ids start at 1, so a probe that sends id 1 (schemathesis' boundary value, the extremes test's
filler) reaches a real org unit, zone, device, clip and programme. No tests live here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from loa_testkit.stack import Stack, database, server_stack
from server.users import accounts as users
from server.users.models import User


@contextmanager
def seeded_stack(tmp: Path) -> Iterator[Stack]:
    """The app with its broker on SQLite, signed in as the admin, with the objects made."""
    with database("sqlite", tmp) as url, server_stack(url, tmp / "data") as stack:
        _seed(stack)
        yield stack


def _post(stack: Stack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = stack.client.post(f"/api/v1{path}", json=body, headers=stack.headers)
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    return answer


def _seed(stack: Stack) -> None:
    unit = _post(stack, "/org-units", {"name": "Tỉnh Thử", "kind": "province"})["id"]
    device = _post(
        stack,
        "/devices",
        {"uid": "dev-probe", "name": "Loa", "org_unit_id": unit, "firmware_profile": "sim"},
    )["device"]["id"]
    zone = _post(stack, "/zones", {"org_unit_id": unit, "name": "Thôn 1", "device_ids": [device]})
    clip = _post(stack, "/clips/compose", {"title": "Chuông", "parts": [{"type": "chime"}]})
    _post(
        stack,
        "/programmes",
        {"title": "Bản tin", "clip_ids": [clip["id"]], "zone_ids": [zone["id"]],
         "start": "2031-03-03T00:00:00Z", "org_unit_id": unit},
    )  # fmt: skip


def admin_token(stack: Stack) -> str:
    """A new bearer token of the admin (a probe may have signed the old one out)."""
    with stack.session() as db:  # type: ignore[no-untyped-call]
        admin = db.scalar(select(User).where(User.username == "admin"))
        assert admin is not None and admin.is_active
        token, _row = users.issue_token(db, user=admin, ttl=timedelta(hours=1))
    return token
