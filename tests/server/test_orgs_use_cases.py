"""Org and zone use cases: reach, audit and events in the caller's transaction, sent after commit.

Tree: province P › commune A › village A1, and P › commune B; an admin of A acts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from protocol import DesiredState, Message, TopicKind
from server.access.actor import Actor, load_actor
from server.audit.models import AuditEntry
from server.db import make_engine, make_session_factory
from server.devices.models import Device
from server.domain import DomainError
from server.events.dispatch import Dispatcher
from server.events.models import OutboxEvent
from server.migrate import upgrade
from server.orgs import service
from server.orgs.models import OrgUnit, Zone
from server.users.models import User

_serial = itertools.count(1)


class Recorder:
    """What the dispatcher hands on after a commit."""

    def __init__(self) -> None:
        self.published: list[tuple[TopicKind, str, Message]] = []
        self.broker_writes = 0
        self.replans = 0

    def publish(self, kind: TopicKind, device_uid: str, message: Message) -> None:
        self.published.append((kind, device_uid, message))

    def write(self, db: Session) -> None:
        self.broker_writes += 1

    def request_replan(self) -> None:
        self.replans += 1


@dataclass
class Tree:
    """The factory, the recorder behind the dispatcher, the units and A's devices."""

    factory: sessionmaker[Session]
    rec: Recorder
    a: int
    a1: int
    b: int
    admin_of_a: int
    dev_a: int
    dev_a1: int
    dev_b: int


def _device(db: Session, unit_id: int) -> int:
    n = next(_serial)
    device = Device(
        uid=f"cum-{n}",
        name=f"Cụm {n}",
        org_unit_id=unit_id,
        firmware_profile="pi4-generic",
        mqtt_password_hash="x",
    )
    db.add(device)
    db.flush()
    return device.id


@pytest.fixture
def tree(db_url: str) -> Iterator[Tree]:
    engine = make_engine(db_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with factory() as db:
        units: dict[str, OrgUnit] = {}
        for name, kind, parent in (
            ("P", "province", None),
            ("A", "commune", "P"),
            ("A1", "village", "A"),
            ("B", "commune", "P"),
        ):
            parent_id = units[parent].id if parent else None
            units[name] = OrgUnit(name=name, kind=kind, parent_id=parent_id)
            db.add(units[name])
            db.flush()
        admin = User(username="admin-a", password_hash="x", role="admin", org_unit_id=units["A"].id)
        db.add(admin)
        db.flush()
        ids = Tree(
            factory=factory,
            rec=Recorder(),
            a=units["A"].id,
            a1=units["A1"].id,
            b=units["B"].id,
            admin_of_a=admin.id,
            dev_a=_device(db, units["A"].id),
            dev_a1=_device(db, units["A1"].id),
            dev_b=_device(db, units["B"].id),
        )
        db.commit()
    rec = ids.rec
    dispatcher = Dispatcher(
        session_factory=factory,
        clock=lambda: datetime.now(UTC),
        outlet=rec,
        broker=rec,
        replanner=rec,
    )
    dispatcher.attach()
    yield ids
    dispatcher.detach()
    engine.dispose()


def _actor(db: Session, t: Tree) -> Actor:
    user = db.get(User, t.admin_of_a)
    assert user is not None
    return load_actor(db, user=user, ip="192.0.2.7", via_cookie=False)


def _kinds(db: Session) -> list[str]:
    return list(db.scalars(select(OutboxEvent.kind).order_by(OutboxEvent.id)))


def test_setting_members_sends_acl_states_and_replan_only_after_commit(tree: Tree) -> None:
    with tree.factory() as db:
        actor = _actor(db, tree)
        zone = service.create_zone(
            db, actor=actor, org_unit_id=tree.a, name="Chợ", description="", device_ids=[]
        )
        assert _kinds(db) == []  # an empty zone changes no device, ACL or schedule
        service.set_zone_members(
            db, actor=actor, zone_id=zone.id, device_ids=[tree.dev_a1, tree.dev_a, tree.dev_a]
        )
        db.flush()
        assert _kinds(db) == ["acl_changed", "desired_state_changed", "replan_needed"]
        payloads = list(db.scalars(select(OutboxEvent.payload).order_by(OutboxEvent.id)))
        assert payloads[1] == {"device_ids": sorted([tree.dev_a, tree.dev_a1])}
        assert (tree.rec.published, tree.rec.broker_writes, tree.rec.replans) == ([], 0, 0)
        db.commit()
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "zone.set_devices")).one()
        assert entry.details == {"device_ids": sorted([tree.dev_a, tree.dev_a1])}
        assert entry.ip == "192.0.2.7"
        versions = {d.id: d.state_version for d in db.scalars(select(Device))}
    assert versions == {tree.dev_a: 1, tree.dev_a1: 1, tree.dev_b: 0}
    states = {uid: m for kind, uid, m in tree.rec.published if kind is TopicKind.STATE}
    assert len(states) == 2
    assert all(isinstance(m, DesiredState) and m.zone_ids == [zone.id] for m in states.values())
    assert (tree.rec.broker_writes, tree.rec.replans) == (1, 1)


def test_a_refused_change_leaves_no_event_and_no_audit(tree: Tree) -> None:
    with tree.factory() as db:
        actor = _actor(db, tree)
        zone = service.create_zone(
            db, actor=actor, org_unit_id=tree.a1, name="Xóm", description="", device_ids=[]
        )
        db.commit()
        with pytest.raises(DomainError) as out_of_reach:
            service.set_zone_members(db, actor=actor, zone_id=zone.id, device_ids=[tree.dev_b])
        assert (out_of_reach.value.status, out_of_reach.value.detail) == (
            422,
            f"Unknown device id(s): {tree.dev_b}.",
        )
        # A's device is reachable but not under the village's zone: the rule refuses it.
        with pytest.raises(DomainError) as outside_zone:
            service.set_zone_members(db, actor=actor, zone_id=zone.id, device_ids=[tree.dev_a])
        assert outside_zone.value.status == 422
        assert "do not belong to this zone's org unit" in str(outside_zone.value.detail)
        db.rollback()
        assert _kinds(db) == []
        actions = set(db.scalars(select(AuditEntry.action)))
    assert actions == {"zone.create"}
    assert tree.rec.published == []


def test_deleting_a_zone_frees_its_devices_and_tells_them(tree: Tree) -> None:
    with tree.factory() as db:
        actor = _actor(db, tree)
        zone = service.create_zone(
            db, actor=actor, org_unit_id=tree.a, name="Toàn xã", description="", device_ids=[]
        )
        service.set_zone_members(db, actor=actor, zone_id=zone.id, device_ids=[tree.dev_a])
        db.commit()
        tree.rec.published.clear()
        service.delete_zone(db, actor=actor, zone_id=zone.id)
        db.commit()
        assert db.get(Zone, zone.id) is None
    [(kind, _uid, state)] = tree.rec.published
    assert kind is TopicKind.STATE and isinstance(state, DesiredState) and state.zone_ids == []
    assert (tree.rec.broker_writes, tree.rec.replans) == (2, 2)


def test_org_unit_refusals_keep_their_status(tree: Tree) -> None:
    with tree.factory() as db:
        actor = _actor(db, tree)
        with pytest.raises(DomainError) as own:
            service.delete_unit(db, actor=actor, unit_id=tree.a)
        assert (own.value.status, own.value.detail) == (
            409,
            "You cannot delete the org unit you belong to.",
        )
        service.create_zone(
            db, actor=actor, org_unit_id=tree.a1, name="Xóm", description="", device_ids=[]
        )
        with pytest.raises(DomainError) as busy:
            service.delete_unit(db, actor=actor, unit_id=tree.a1)
        assert busy.value.status == 409
        with pytest.raises(DomainError) as cycle:
            service.update_unit(db, actor=actor, unit_id=tree.a, changes={"parent_id": tree.a1})
        assert cycle.value.status == 422
        with pytest.raises(DomainError) as elsewhere:
            service.update_unit(db, actor=actor, unit_id=tree.b, changes={"name": "X"})
        assert (elsewhere.value.status, elsewhere.value.detail) == (
            404,
            f"Org unit {tree.b} does not exist.",
        )
        db.rollback()
