"""User use cases: signing in and out, one's own password, and managing the users of a subtree."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.audit import service as audit
from server.domain import DomainError, not_found
from server.users import accounts, signin

# Rules re-exported under their old names, for callers outside this feature (app start, cli,
# seed, the token check in server.access.deps, live sockets, tests).
from server.users.models import SERVICE_ROLES, AuthToken, User
from server.users.signin import LoginGate

TokenKind = Literal["api", "session"]


def _audit(
    db: Session,
    actor: Actor | None,
    action: str,
    user: User | None,
    *,
    summary: str = "",
    details: dict[str, Any] | None = None,
    username: str | None = None,
    ip: str | None = None,
) -> None:
    """One audit entry about a user (actor None: a sign-in, named by username and ip)."""
    audit.record(
        db,
        actor=actor,
        action=action,
        object_type="user",
        object_id=user.id if user else None,
        org_unit_id=user.org_unit_id if user else None,
        summary=summary,
        details=details,
        username=username,
        user_id=user.id if user else None,
        ip=ip,
    )


def _check_role(role: str) -> None:
    try:
        accounts.check_role(role)
    except accounts.InvalidRole as exc:
        raise DomainError(422, str(exc)) from None


def _person(db: Session, actor: Actor, user_id: int) -> User:
    """A user of the caller's subtree; service users (outside sources) answer like missing ones."""
    user = reach.load(db, actor, User, user_id)
    if user.role in SERVICE_ROLES:
        raise not_found("User", user_id)  # managed through /api/v1/sources, never as a person
    return user


def _not_self(actor: Actor, user: User, what: str) -> None:
    if user.id == actor.user.id:
        raise DomainError(409, f"You cannot {what} your own account; ask another administrator.")


def sign_in(
    db: Session, *, gate: LoginGate, username: str, password: str, ttl: timedelta, kind: TokenKind
) -> tuple[str, AuthToken]:
    """Check the credentials under the rate limit (429) and issue a token ("api") or session.

    Wrong credentials: 401, and the failure's audit entry is committed all the same.
    """
    user = signin.check_password(db, gate=gate, username=username, password=password)
    if user is None:
        _audit(
            db,
            None,
            "auth.login_failed",
            None,
            username=username[:64],
            ip=gate.ip,
            summary="wrong username or password",
        )
        signin.keep_failure(db)  # the rate limiter's record of the failure, see there
        raise DomainError(401, "Wrong username or password.")
    token, row = accounts.issue_token(db, user=user, ttl=ttl, kind=kind)
    summary = "API token issued" if kind == "api" else "console session"
    _audit(db, None, "auth.login", user, username=user.username, ip=gate.ip, summary=summary)
    return token, row


def sign_out(db: Session, *, actor: Actor, token: str) -> None:
    """Revoke the token (or console session) the caller used."""
    accounts.revoke_token(db, token=token)
    _audit(db, actor, "auth.logout", actor.user)


def change_own_password(
    db: Session, *, actor: Actor, current_password: str, new_password: str
) -> None:
    """Change the caller's password; every session and token of theirs ends."""
    user = actor.user
    if accounts.authenticate(db, username=user.username, password=current_password) is None:
        raise DomainError(422, "The current password is wrong.")
    accounts.set_password(db, user=user, password=new_password)
    _audit(db, actor, "user.password_changed", user)


def list_users(db: Session, *, actor: Actor) -> list[User]:
    """Users of the caller's org subtree, by username."""
    query = (
        select(User)
        .where(reach.reachable(actor, User), User.role.not_in(SERVICE_ROLES))
        .order_by(User.username)
    )
    return list(db.scalars(query))


def get(db: Session, *, actor: Actor, user_id: int) -> User:
    """One user of the caller's subtree."""
    return _person(db, actor, user_id)


def create(
    db: Session,
    *,
    actor: Actor,
    username: str,
    password: str,
    role: str,
    org_unit_id: int | None,
    full_name: str,
    can_emergency: bool,
) -> User:
    """Add a user inside the caller's org subtree."""
    reach.check_org_unit(db, actor, org_unit_id)
    if db.scalar(select(User.id).where(User.username == username)) is not None:
        raise DomainError(409, f"The username {username!r} is already taken.")
    _check_role(role)
    user = accounts.create_user(
        db,
        username=username,
        password=password,
        role=role,
        org_unit_id=org_unit_id,
        full_name=full_name,
        can_emergency=can_emergency,
    )
    _audit(
        db,
        actor,
        "user.create",
        user,
        summary=f"{user.username} ({user.role})",
        details={"role": user.role, "can_emergency": user.can_emergency},
    )
    return user


def update(db: Session, *, actor: Actor, user_id: int, changes: dict[str, Any]) -> User:
    """Change a user's role, org unit, name or emergency permission (None values are ignored)."""
    user = _person(db, actor, user_id)
    changes = {k: v for k, v in changes.items() if v is not None}
    if "role" in changes:
        _check_role(changes["role"])
        if changes["role"] != user.role:
            _not_self(actor, user, "change the role of")
    if "org_unit_id" in changes:
        reach.check_org_unit(db, actor, changes["org_unit_id"])
        if changes["org_unit_id"] != user.org_unit_id:
            _not_self(actor, user, "move")
    before = {k: getattr(user, k) for k in changes}
    for key, value in changes.items():
        setattr(user, key, value)
    if before.get("role", user.role) != user.role or (
        before.get("org_unit_id", user.org_unit_id) != user.org_unit_id
    ):
        accounts.revoke_all_tokens(db, user=user)  # new rights start with a new sign-in
    details = {"before": before, "after": changes}
    _audit(db, actor, "user.update", user, summary=user.username, details=details)
    return user


def deactivate(db: Session, *, actor: Actor, user_id: int) -> User:
    """Block a user of the subtree: every token and session of theirs stops working at once."""
    user = _person(db, actor, user_id)
    _not_self(actor, user, "deactivate")
    accounts.set_active(db, user=user, active=False)
    _audit(db, actor, "user.deactivate", user, summary=user.username)
    return user


def activate(db: Session, *, actor: Actor, user_id: int) -> User:
    """Let a deactivated user sign in again (old tokens stay revoked)."""
    user = _person(db, actor, user_id)
    accounts.set_active(db, user=user, active=True)
    _audit(db, actor, "user.activate", user, summary=user.username)
    return user


def reset_password(db: Session, *, actor: Actor, user_id: int, password: str) -> None:
    """Set a new password for a user of the subtree; they are signed out everywhere."""
    user = _person(db, actor, user_id)
    accounts.set_password(db, user=user, password=password)
    _audit(db, actor, "user.password_reset", user, summary=user.username)
