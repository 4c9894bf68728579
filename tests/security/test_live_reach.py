"""POST /api/v1/live: another commune's object named in the body answers like a missing id.

The sources and the id fields are read from the request schema (LiveStart), so a new source
or a new id field fails here until it is covered. For every source and every id field a
commune-A user names commune B's object, then an id that does not exist, with every other
reference their own: both answers carry the same status and the same detail (apart from the
id). A field a source does not use (a clip for a microphone) is ignored alike for both.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from server.live.schemas import LiveStart
from server.relay.models import RelaySource
from tests.security.test_reach_bodies import FIELD_KINDS, MISSING, _detail
from tests.server.conftest import BACKENDS
from tests.server.test_permissions_fixtures import Org, PermWorld, running_perm_world

URL = "http://radio.invalid/stream"  # never played: refused before or by the probe
ROLES = ("operator", "admin")  # commune A's: may broadcast; only reach can refuse
# Each commune's registered relay source (of URL), by commune id: set by the test.
RELAY_SOURCES: dict[int, int] = {}
# What each source needs beside its targets, built from commune A's own objects.
SOURCE_FIELDS: dict[str, Callable[[Org], dict[str, Any]]] = {
    "mic": lambda a: {},
    "relay": lambda a: {"relay_source_id": RELAY_SOURCES[a.commune]},
    "url": lambda a: {"url": URL},  # the older name: a URL is matched against A's sources
    "file": lambda a: {"clip_id": a.clip},
}
# Fields only some sources read; every other id field is read by every source.
READ_BY = {"clip_id": {"file"}, "relay_source_id": {"relay", "url"}}
KINDS = FIELD_KINDS | {"relay_source_id": "relay_source"}


def _sources() -> set[str]:
    return set(typing.get_args(LiveStart.model_fields["source"].annotation))


def _id_fields() -> dict[str, str]:
    """The body's id fields and the kind of object each names."""
    names = [n for n in LiveStart.model_fields if n.endswith(("_id", "_ids"))]
    unknown = set(names) - set(KINDS)
    assert not unknown, f"describe {unknown} in test_reach_bodies.FIELD_KINDS"
    return {n: KINDS[n] for n in names}


def _foreign(b: Org, kind: str) -> list[int]:
    """Commune B's objects of a kind (an org unit: the commune and a village below it)."""
    return {
        "zone": [b.zone],
        "org_unit": [b.commune, b.village],
        "clip": [b.clip],
        "device": [b.device],
        "relay_source": [RELAY_SOURCES[b.commune]],
    }[kind]


def _body(source: str, a: Org, field: str, ref: int) -> dict[str, Any]:
    """A body with every reference commune A's own, except `field` = ref."""
    body: dict[str, Any] = {"source": source, "zone_ids": [a.zone], **SOURCE_FIELDS[source](a)}
    if field == "zone_ids":
        body["zone_ids"] = [a.zone, ref]
    elif field == "org_unit_id":
        body.pop("zone_ids")  # the org unit alone names the targets
        body["org_unit_id"] = ref
    else:
        body[field] = [ref] if field.endswith("_ids") else ref
    return body


@pytest.fixture(params=BACKENDS)
def perm_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PermWorld]:
    """Communes A and B with one user per role in A, on each database backend."""
    with running_perm_world(request.param, tmp_path) as world:
        yield world


def test_schema_names_the_sources_and_fields_covered_here() -> None:
    assert _sources() == set(SOURCE_FIELDS), "add the new source to SOURCE_FIELDS"
    assert set(_id_fields()) >= {"zone_ids", "org_unit_id", "clip_id"}


def _compare(read: bool, foreign: int, got_foreign: Any, got_missing: Any) -> str | None:
    """Why the two answers tell the ids apart (None: they do not)."""
    if read and (got_missing.status_code < 400 or str(MISSING) not in got_missing.text):
        return f"the missing id was not refused: {got_missing.status_code} {got_missing.text}"
    if got_foreign.status_code != got_missing.status_code:
        return f"foreign {got_foreign.text} != missing {got_missing.text}"
    if got_missing.status_code >= 400 and _detail(got_foreign, foreign) != _detail(
        got_missing, MISSING
    ):
        return f"foreign {got_foreign.text} != missing {got_missing.text}"
    return None


def test_every_live_source_refuses_foreign_ids_like_missing_ones(perm_world: PermWorld) -> None:
    w = perm_world
    assert w.a is not None and w.b is not None
    a, b = w.a, w.b
    with w.stack.session() as db:  # past the API's DNS check: URL never resolves
        for org in (a, b):
            row = RelaySource(name="Đài", url=URL, org_unit_id=org.commune)
            db.add(row)
            db.flush()
            RELAY_SOURCES[org.commune] = row.id
    failures: list[str] = []
    refused = 0

    def post(role: str, body: dict[str, Any]) -> Any:
        r = w.client.post("/api/v1/live", json=body, headers=w.headers(role))
        if r.status_code == 201:  # a field the source ignores: end what it started
            stop = w.client.delete(f"/api/v1/live/{r.json()['id']}", headers=w.headers(role))
            assert stop.status_code == 200, stop.text
        return r

    for role in ROLES:
        for source in sorted(_sources()):
            for field, kind in sorted(_id_fields().items()):
                read = source in READ_BY.get(field, {source})
                for foreign in _foreign(b, kind):
                    got_foreign = post(role, _body(source, a, field, foreign))
                    got_missing = post(role, _body(source, a, field, MISSING))
                    why = _compare(read, foreign, got_foreign, got_missing)
                    if why is None and b.name in got_foreign.text:
                        why = "the answer names commune B"
                    if why is not None:
                        failures.append(f"{role} {source} {field}={foreign}: {why[:400]}")
                    refused += got_foreign.status_code >= 400
    assert not failures, f"{len(failures)} oracle(s):\n" + "\n".join(failures)
    # Per role: a zone and two org units for each of 4 sources, the clip for file, the
    # relay source for the two relay sources.
    assert refused >= len(ROLES) * 10, refused
