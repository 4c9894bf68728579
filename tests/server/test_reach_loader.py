"""The one reach loader (server/access/reach.py) on a real, migrated database with two communes.

Tree: province P › commune A › village A1, and province P › commune B. Every owned model has
one object in A and one in B (clips also one of P and one system-wide). Users act from A, from
A1 and from nowhere (global).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor, load_actor
from server.bulletins.models import Bulletin, BulletinDelivery, RegularSlot
from server.clips.models import Clip
from server.db import make_engine, make_session_factory
from server.devices.models import Device
from server.domain import DomainError
from server.feedback.models import FeedbackCase, FeedbackCategory
from server.migrate import upgrade
from server.orgs.models import OrgUnit, Zone
from server.programmes.models import Programme
from server.relay.models import RelaySource
from server.sources.models import Source
from server.users.models import User

MISSING = 2_000_000_000
_serial = itertools.count(1)


def _unit(db: Session, name: str, kind: str, parent: OrgUnit | None) -> OrgUnit:
    unit = OrgUnit(name=name, kind=kind, parent_id=parent.id if parent else None)
    db.add(unit)
    db.flush()
    return unit


def _zone(db: Session, unit_id: int | None) -> Zone:
    assert unit_id is not None
    return Zone(name=f"Zone {next(_serial)}", org_unit_id=unit_id)


def _device(db: Session, unit_id: int | None) -> Device:
    n = next(_serial)
    assert unit_id is not None
    return Device(
        uid=f"dev-{n}", name=f"Cụm {n}", org_unit_id=unit_id, firmware_profile="pi4-generic",
        mqtt_password_hash="x",
    )  # fmt: skip


def _clip(db: Session, unit_id: int | None) -> Clip:
    n = next(_serial)
    return Clip(
        sha256=f"{n:064x}", original_sha256=f"{n:064x}", title=f"Bản tin {n}",
        original_duration_s=1.0, original_sample_rate=48000, original_channels=1,
        original_size_bytes=100, duration_s=1.0, size_bytes=100, org_unit_id=unit_id,
    )  # fmt: skip


def _programme(db: Session, unit_id: int | None) -> Programme:
    assert unit_id is not None
    return Programme(title=f"Chương trình {next(_serial)}", priority="normal", org_unit_id=unit_id)


def _user(db: Session, unit_id: int | None) -> User:
    n = next(_serial)
    return User(username=f"u{n}", password_hash="x", role="viewer", org_unit_id=unit_id)


def _bulletin(db: Session, unit_id: int | None) -> Bulletin:
    assert unit_id is not None
    now = datetime.now(UTC)
    return Bulletin(title=f"Bản tin {next(_serial)}", level="normal", org_unit_id=unit_id,
                    valid_from=now, valid_until=now + timedelta(days=1))  # fmt: skip


def _delivery(db: Session, unit_id: int | None) -> BulletinDelivery:
    bulletin = _bulletin(db, unit_id)  # sent by the province would do too: the receiver owns it
    db.add(bulletin)
    db.flush()
    assert unit_id is not None
    return BulletinDelivery(bulletin_id=bulletin.id, org_unit_id=unit_id)


def _source(db: Session, unit_id: int | None) -> Source:
    assert unit_id is not None
    n = next(_serial)
    user = User(username=f"source-{n}", password_hash="!", role="source", org_unit_id=unit_id)
    db.add(user)
    db.flush()
    return Source(name=f"Sở {n}", org_unit_id=unit_id, user_id=user.id, key_hint="loasrc_x",
                  key_hash=f"{n:064x}")  # fmt: skip


def _slot(db: Session, unit_id: int | None) -> RegularSlot:
    assert unit_id is not None
    return RegularSlot(org_unit_id=unit_id, start_time="05:00", weekdays="123456")


def _category(db: Session, unit_id: int | None) -> FeedbackCategory:
    assert unit_id is not None
    return FeedbackCategory(org_unit_id=unit_id, name=f"Môi trường {next(_serial)}")


def _case(db: Session, unit_id: int | None) -> FeedbackCase:
    assert unit_id is not None
    n = next(_serial)
    return FeedbackCase(tracking_code=f"T{n:09d}", org_unit_id=unit_id,
                        received_by_unit_id=unit_id, content="Đèn đường hỏng",
                        due_at=datetime.now(UTC) + timedelta(days=10))  # fmt: skip


def _relay_source(db: Session, unit_id: int | None) -> RelaySource:
    assert unit_id is not None
    return RelaySource(name=f"VOV1 {next(_serial)}", url="https://radio.example.vn/vov1",
                       org_unit_id=unit_id)  # fmt: skip


# One way to make an object owned by an org unit, per model the loader knows.
MAKERS: dict[type[Any], Callable[[Session, int | None], Any]] = {
    Zone: _zone,
    Device: _device,
    Clip: _clip,
    Programme: _programme,
    User: _user,
    Source: _source,
    Bulletin: _bulletin,
    BulletinDelivery: _delivery,
    RegularSlot: _slot,
    FeedbackCategory: _category,
    FeedbackCase: _case,
    RelaySource: _relay_source,
}


@dataclass
class World:
    """Two communes' objects and three callers."""

    db: Session
    p: OrgUnit
    a: OrgUnit
    a1: OrgUnit
    b: OrgUnit
    in_a: dict[type[Any], Any]
    in_a1: dict[type[Any], Any]
    in_b: dict[type[Any], Any]
    from_a: Actor
    from_a1: Actor
    everywhere: Actor


def _make(db: Session, model: type[Any], unit: OrgUnit) -> Any:
    if model is OrgUnit:
        return unit
    row = MAKERS[model](db, unit.id)
    db.add(row)
    db.flush()
    return row


def _actor(db: Session, unit: OrgUnit | None) -> Actor:
    user = User(
        username=f"actor{next(_serial)}",
        password_hash="x",
        role="admin",
        org_unit_id=unit.id if unit else None,
    )
    db.add(user)
    db.flush()
    return load_actor(db, user=user, ip="127.0.0.1", via_cookie=False)


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    """The tree, an object of every owned model in A, A1 and B, and the callers."""
    engine = make_engine(db_url)
    upgrade(engine)
    db = make_session_factory(engine)()
    try:
        p = _unit(db, "Tỉnh Quảng Trị", "province", None)
        a = _unit(db, "Xã Bảo Ninh", "commune", p)
        a1 = _unit(db, "Thôn Đồng Hải", "village", a)
        b = _unit(db, "Xã Quang Phú", "commune", p)
        yield World(
            db=db,
            p=p,
            a=a,
            a1=a1,
            b=b,
            in_a={m: _make(db, m, a) for m in reach.OWNED},
            in_a1={m: _make(db, m, a1) for m in reach.OWNED},
            in_b={m: _make(db, m, b) for m in reach.OWNED},
            from_a=_actor(db, a),
            from_a1=_actor(db, a1),
            everywhere=_actor(db, None),
        )
    finally:
        db.rollback()
        db.close()
        engine.dispose()


def _refusal(call: Callable[[], object]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value


def test_every_owned_model_has_a_maker() -> None:
    """A model added to reach.OWNED must be added here too, so the tests below cover it."""
    assert set(reach.OWNED) == {OrgUnit, *MAKERS}


@pytest.mark.parametrize("model", list(reach.OWNED), ids=lambda m: m.__name__)
def test_another_communes_object_loads_like_a_missing_one(world: World, model: type[Any]) -> None:
    """404, and the same sentence as for an id nobody has, apart from the id."""
    db, actor = world.db, world.from_a
    assert reach.load(db, actor, model, world.in_a[model].id) is world.in_a[model]
    assert reach.load(db, actor, model, world.in_a1[model].id) is world.in_a1[model]
    other_id = world.in_b[model].id
    theirs = _refusal(lambda: reach.load(db, actor, model, other_id))
    missing = _refusal(lambda: reach.load(db, actor, model, MISSING))
    assert (theirs.status_code, missing.status_code) == (404, 404)
    label = reach.OWNED[model].label
    assert theirs.detail == f"{label} {other_id} does not exist."
    assert str(theirs.detail).replace(str(other_id), "N") == missing.detail.replace(
        str(MISSING), "N"
    )
    # The global caller reaches B's object; the missing id stays missing.
    assert reach.load(db, world.everywhere, model, other_id) is world.in_b[model]
    assert _refusal(lambda: reach.load(db, world.everywhere, model, MISSING)).status_code == 404


def test_a_parent_units_clip_is_readable_below_but_not_writable(world: World) -> None:
    """Clips are shared down the tree for reading; only their owners' subtree deletes them."""
    db, village = world.db, world.from_a1
    communes = world.in_a[Clip]
    province = _make(db, Clip, world.p)
    system_wide = _clip(db, None)
    db.add(system_wide)
    db.flush()
    for shared in (communes, province, system_wide):
        assert reach.load(db, village, Clip, shared.id) is shared
        refused = _refusal(partial(reach.writable_clip, db, village, shared.id))
        assert refused.status_code == 403
        assert "shared from a higher org unit" in str(refused.detail)
    own = world.in_a1[Clip]
    assert reach.writable_clip(db, village, own.id) is own
    assert reach.writable_clip(db, world.from_a, own.id) is own  # from above: inside A's subtree
    assert reach.writable_clip(db, world.everywhere, system_wide.id) is system_wide
    # Another commune's clip is not shared sideways: 404 like a missing one, not 403.
    theirs = _refusal(lambda: reach.writable_clip(db, village, world.in_b[Clip].id))
    assert (theirs.status_code, theirs.detail) == (
        404,
        f"Clip {world.in_b[Clip].id} does not exist.",
    )
    listed = set(db.scalars(select(Clip.id).where(reach.reachable(village, Clip))))
    assert listed == {communes.id, province.id, system_wide.id, own.id}


@pytest.mark.parametrize("model", list(reach.OWNED), ids=lambda m: m.__name__)
def test_reachable_filters_lists(world: World, model: type[Any]) -> None:
    """A list query with reachable() holds exactly the caller's subtree (and shared clips)."""
    db = world.db
    ids = {
        "a": world.in_a[model].id,
        "a1": world.in_a1[model].id,
        "b": world.in_b[model].id,
    }

    def listed(actor: Actor) -> set[int]:
        return set(db.scalars(select(model.id).where(reach.reachable(actor, model))))

    from_a, from_a1 = listed(world.from_a), listed(world.from_a1)
    assert {ids["a"], ids["a1"]} <= from_a and ids["b"] not in from_a
    assert ids["a1"] in from_a1 and ids["b"] not in from_a1
    # The commune's object is above the village: only a clip is shared down to it.
    assert (ids["a"] in from_a1) is (model is Clip)
    assert set(ids.values()) <= listed(world.everywhere)
    everything = set(db.scalars(select(model.id)))
    assert listed(world.everywhere) == everything
    if model is User:  # the callers themselves: A's user is listed from A, not from A1
        assert world.from_a.user.id in from_a and world.from_a.user.id not in from_a1
        assert world.everywhere.user.id not in from_a  # no org unit: global callers only


@pytest.mark.parametrize("model", list(reach.OWNED), ids=lambda m: m.__name__)
def test_check_ids_names_exactly_the_unreachable_ids(world: World, model: type[Any]) -> None:
    """422 'Unknown x id(s): …' naming B's id and the missing one, sorted, nothing else."""
    db, actor = world.db, world.from_a
    own, below, theirs = world.in_a[model].id, world.in_a1[model].id, world.in_b[model].id
    reach.check_ids(db, actor, model, [own, below, own])
    reach.check_ids(db, actor, model, [])
    refused = _refusal(lambda: reach.check_ids(db, actor, model, [MISSING, own, theirs, below]))
    noun = reach.OWNED[model].label.lower()
    assert refused.status_code == 422
    assert refused.detail == f"Unknown {noun} id(s): {theirs}, {MISSING}."
    only_theirs = _refusal(lambda: reach.check_ids(db, actor, model, [theirs]))
    only_missing = _refusal(lambda: reach.check_ids(db, actor, model, [MISSING]))
    assert str(only_theirs.detail).replace(str(theirs), "N") == str(only_missing.detail).replace(
        str(MISSING), "N"
    )
    reach.check_ids(db, world.everywhere, model, [own, theirs])


def test_check_org_unit_refuses_another_commune_like_a_missing_one(world: World) -> None:
    """An org unit id in a body: B's and a missing one get the same 422 sentence."""
    db, actor = world.db, world.from_a
    reach.check_org_unit(db, actor, world.a1.id)
    theirs = _refusal(lambda: reach.check_org_unit(db, actor, world.b.id))
    missing = _refusal(lambda: reach.check_org_unit(db, actor, MISSING))
    assert (theirs.status_code, theirs.detail) == (422, f"Org unit {world.b.id} does not exist.")
    assert (missing.status_code, missing.detail) == (422, f"Org unit {MISSING} does not exist.")
    above = _refusal(lambda: reach.check_org_unit(db, actor, world.p.id, status=404))
    assert (above.status_code, above.detail) == (404, f"Org unit {world.p.id} does not exist.")
    nowhere = _refusal(lambda: reach.check_org_unit(db, actor, None))
    assert (nowhere.status_code, nowhere.detail) == (422, "Choose an org unit inside your own.")
    reach.check_org_unit(db, world.everywhere, None)
    reach.check_org_unit(db, world.everywhere, world.b.id)


# -- no load by id of an owned model beside the loader --------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
LOADER = "server/access/reach.py"
OWNED_NAMES = frozenset(model.__name__ for model in reach.OWNED)
# Loads of an owned model in code that has a caller, each with the reason it is not reach.load.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("server/console/clip_pages.py", "clip_page", "OrgUnit"): (
        "the owner's name of a clip shared down from a higher org unit: that unit is outside "
        "the reader's reach by design, and only its name is shown"
    ),
    # CAP names bulletins by (sender, identifier), not by id: the bulletin a repeat, an Update
    # or a Cancel refers to is found through its CAP message, then checked with actor.reaches
    # (a repeat from elsewhere answers 409 without naming anything; a Cancel of a bulletin out
    # of reach answers like one never received).
    ("server/cap/intake.py", "_repeat", "Bulletin"): "found by CAP identity, reach checked",
    ("server/cap/intake.py", "_cancel_referenced", "Bulletin"): "found by CAP identity, reach "
    "checked",
}


def _names(node: ast.AST | None) -> set[str]:
    """Every name an annotation mentions (Actor, ConsoleActor, Annotated[Actor, …], x.Actor)."""
    if node is None:
        return set()
    return {
        n.id if isinstance(n, ast.Name) else n.attr
        for n in ast.walk(node)
        if isinstance(n, ast.Name | ast.Attribute)
    }


def _has_actor(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """The function takes a caller (an `actor` parameter or one typed …Actor) or uses one."""
    args = function.args
    for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
        if arg.arg == "actor" or any(n.endswith("Actor") for n in _names(arg.annotation)):
            return True
    return any(isinstance(n, ast.Name) and n.id == "actor" for n in ast.walk(function))


def actor_loads(source: str) -> set[tuple[str, str]]:
    """(function, model) for each `<session>.get(Model, …)` of an owned model beside a caller."""
    found: set[tuple[str, str]] = set()
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if not _has_actor(function):
            continue
        for call in ast.walk(function):
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "get"
                and call.args
            ):
                continue
            first = call.args[0]
            name = first.id if isinstance(first, ast.Name) else getattr(first, "attr", "")
            if name in OWNED_NAMES:
                found.add((function.name, name))
    return found


def test_the_scan_finds_a_load_beside_an_actor() -> None:
    """The scanner below flags what it must and leaves actor-less loads (bridge, planner) alone."""
    source = (
        "def route(db, actor: Actor, zone_id):\n    return db.get(Zone, zone_id)\n"
        "def page(db, user: ConsoleActor):\n    return session.get(models.Device, 1)\n"
        "def service(db, *, caller: Annotated[Actor, allow('x')]):\n    db.get(Clip, 1)\n"
        "def bridge(db, uid):\n    return db.get(Device, uid)\n"
        "def other(db, actor):\n    return db.get(PlayRecord, 1), {}.get('Zone')\n"
    )
    assert actor_loads(source) == {("route", "Zone"), ("page", "Device"), ("service", "Clip")}


def test_no_load_by_id_of_an_owned_model_beside_an_actor_outside_the_loader() -> None:
    """Code that acts for a caller loads owned objects only through server/access/reach.py."""
    seen: set[tuple[str, str, str]] = set()
    for path in sorted((ROOT / "server").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name == LOADER:
            continue
        seen |= {(name, f, m) for f, m in actor_loads(path.read_text(encoding="utf-8"))}
    assert sorted(seen - set(ALLOWED)) == [], "use reach.load / reach.check_ids instead"
    assert sorted(set(ALLOWED) - seen) == [], "stale entry in ALLOWED: remove it"
