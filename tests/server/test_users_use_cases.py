"""User use cases called directly: sign-in under the limit, reach, refusals, audit in the session.

Tree: commune A and commune B; an admin of A acts. Real SQLite (and PostgreSQL when set).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.access.actor import Actor, load_actor
from server.access.ratelimit import LoginLimiter
from server.audit.models import AuditEntry
from server.db import make_engine, make_session_factory
from server.domain import DomainError
from server.migrate import upgrade
from server.orgs.models import OrgUnit
from server.users import accounts, service
from server.users.models import User
from server.users.signin import LoginGate, TooManyAttempts

PASSWORD = "mat-khau-dung-1"
LIMIT = 3


@dataclass
class World:
    """The factory, a sign-in gate, the two communes and their users."""

    factory: sessionmaker[Session]
    gate: LoginGate
    a: int
    b: int
    admin_a: int
    user_b: int


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    engine = make_engine(db_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with factory() as db:
        a = OrgUnit(name="A", kind="commune", parent_id=None)
        b = OrgUnit(name="B", kind="commune", parent_id=None)
        db.add_all([a, b])
        db.flush()
        admin = accounts.create_user(
            db, username="admin-a", password=PASSWORD, role="admin", org_unit_id=a.id
        )
        other = accounts.create_user(
            db, username="viewer-b", password=PASSWORD, role="viewer", org_unit_id=b.id
        )
        ids = (a.id, b.id, admin.id, other.id)
        db.commit()
    limiter = LoginLimiter(max_failures=LIMIT, window_s=300)
    gate = LoginGate(limiter=limiter, factory=factory, ip="192.0.2.9")
    yield World(factory, gate, *ids)
    engine.dispose()


def _admin(db: Session, w: World) -> Actor:
    user = db.get(User, w.admin_a)
    assert user is not None
    return load_actor(db, user=user, ip="192.0.2.7", via_cookie=False)


def _actions(db: Session) -> list[str]:
    return list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def _sign_in(db: Session, w: World, password: str) -> str:
    token, _row = service.sign_in(
        db, gate=w.gate, username="viewer-b", password=password, ttl=timedelta(hours=1), kind="api"
    )
    return token


def test_a_failed_sign_in_is_audited_although_the_request_rolls_back(world: World) -> None:
    with world.factory() as db:
        with pytest.raises(DomainError) as failed:
            _sign_in(db, world, "sai-mat-khau")
        assert failed.value.status == 401
        db.rollback()  # what the request's session does with the 401
    with world.factory() as db:
        entry = db.scalars(select(AuditEntry)).one()
        assert (entry.action, entry.username, entry.ip) == (
            "auth.login_failed",
            "viewer-b",
            "192.0.2.9",
        )


def test_the_limit_refuses_with_retry_after_then_a_right_password_is_not_evaluated(
    world: World,
) -> None:
    for _ in range(LIMIT):
        with world.factory() as db, pytest.raises(DomainError):
            _sign_in(db, world, "sai-mat-khau")
    with world.factory() as db:
        with pytest.raises(TooManyAttempts) as refused:
            _sign_in(db, world, PASSWORD)
        assert refused.value.status == 429
        assert refused.value.headers is not None
        assert int(refused.value.headers["Retry-After"]) >= 1
        db.rollback()
    with world.factory() as db:
        assert _actions(db) == ["auth.login_failed"] * LIMIT  # the refused one never ran


def test_a_sign_in_issues_a_token_audited_in_the_callers_transaction(world: World) -> None:
    with world.factory() as db:
        token = _sign_in(db, world, PASSWORD)
        db.rollback()  # the use case does not commit: nothing of the sign-in stays
        assert accounts.user_for_token(db, token=token) is None
        assert _actions(db) == []
    with world.factory() as db:
        token = _sign_in(db, world, PASSWORD)
        db.commit()
    with world.factory() as db:
        user = accounts.user_for_token(db, token=token)
        assert user is not None and user.username == "viewer-b"
        entry = db.scalars(select(AuditEntry)).one()
        assert (entry.action, entry.user_id, entry.ip) == ("auth.login", user.id, "192.0.2.9")


def test_a_user_outside_the_subtree_answers_like_a_missing_one(world: World) -> None:
    with world.factory() as db:
        actor = _admin(db, world)
        assert [u.username for u in service.list_users(db, actor=actor)] == ["admin-a"]
        for call in (
            lambda: service.get(db, actor=actor, user_id=world.user_b),
            lambda: service.deactivate(db, actor=actor, user_id=world.user_b),
            lambda: service.reset_password(db, actor=actor, user_id=world.user_b, password="x" * 8),
        ):
            with pytest.raises(DomainError) as missing:
                call()
            assert (missing.value.status, missing.value.detail) == (
                404,
                f"User {world.user_b} does not exist.",
            )
        with pytest.raises(DomainError) as foreign_unit:
            service.create(
                db,
                actor=actor,
                username="moi",
                password=PASSWORD,
                role="viewer",
                org_unit_id=world.b,
                full_name="",
                can_emergency=False,
            )
        assert (foreign_unit.value.status, foreign_unit.value.detail) == (
            422,
            f"Org unit {world.b} does not exist.",
        )
        assert _actions(db) == []


def test_refusals_and_changes_of_managed_users(world: World) -> None:
    with world.factory() as db:
        actor = _admin(db, world)
        with pytest.raises(DomainError) as own:
            service.update(db, actor=actor, user_id=world.admin_a, changes={"role": "viewer"})
        assert own.value.status == 409
        with pytest.raises(DomainError) as role:
            service.update(db, actor=actor, user_id=world.admin_a, changes={"role": "king"})
        assert role.value.status == 422
        user = service.create(
            db,
            actor=actor,
            username="bien-tap",
            password=PASSWORD,
            role="editor",
            org_unit_id=world.a,
            full_name="",
            can_emergency=False,
        )
        service.update(
            db, actor=actor, user_id=user.id, changes={"role": "viewer", "full_name": None}
        )
        service.deactivate(db, actor=actor, user_id=user.id)
        assert (user.role, user.is_active) == ("viewer", False)
        assert _actions(db) == ["user.create", "user.update", "user.deactivate"]
        update = db.scalars(select(AuditEntry).where(AuditEntry.action == "user.update")).one()
        assert update.details == {"before": {"role": "editor"}, "after": {"role": "viewer"}}
