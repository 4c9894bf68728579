"""The rules the user use cases call: roles, password hashing, opaque bearer tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.db import utcnow
from server.users.models import ROLES, SERVICE_ROLES, AuthToken, User

_hasher = PasswordHasher()
# Verified against when the username is unknown, so timing does not reveal which users exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
# A password hash no password matches: service users (outside sources) sign in by key only.
UNUSABLE_PASSWORD = "!no-password"


class InvalidRole(ValueError):
    """A role name that is not one of ROLES."""


def check_role(role: str) -> None:
    """Raise InvalidRole unless role is one of ROLES."""
    if role not in ROLES:
        raise InvalidRole(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")


def hash_password(password: str) -> str:
    """Argon2id hash of a password."""
    return _hasher.hash(password)


def create_user(
    db: Session,
    *,
    username: str,
    password: str,
    role: str,
    org_unit_id: int | None,
    full_name: str = "",
    can_emergency: bool = False,
) -> User:
    """Add a user; the caller commits."""
    check_role(role)
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        org_unit_id=org_unit_id,
        full_name=full_name,
        can_emergency=can_emergency,
    )
    db.add(user)
    db.flush()
    return user


def create_service_user(
    db: Session, *, username: str, role: str, org_unit_id: int, full_name: str
) -> User:
    """Add the user an outside system acts as: a service role, and no password that works."""
    if role not in SERVICE_ROLES:
        raise InvalidRole(f"{role!r} is not a service role")
    user = User(
        username=username,
        password_hash=UNUSABLE_PASSWORD,
        role=role,
        org_unit_id=org_unit_id,
        full_name=full_name,
    )
    db.add(user)
    db.flush()
    return user


def ensure_admin(db: Session, *, password: str) -> bool:
    """Create the bootstrap user 'admin' when no admin exists; True if created."""
    if db.scalar(select(User.id).where(User.role == "admin").limit(1)) is not None:
        return False
    try:
        with db.begin_nested():
            create_user(
                db,
                username="admin",
                password=password,
                role="admin",
                org_unit_id=None,
                full_name="Quản trị hệ thống",
            )
    except IntegrityError:
        return False  # another server process starting at the same moment created it
    return True


def verify_password(*, password_hash: str | None, password: str) -> bool:
    """True when password matches the hash (None or unusable: no match, which takes as long)."""
    usable = password_hash is not None and not password_hash.startswith(UNUSABLE_PASSWORD)
    try:
        _hasher.verify(password_hash if usable and password_hash else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return usable


def authenticate(db: Session, *, username: str, password: str) -> User | None:
    """The active user with these credentials, or None."""
    user = db.scalar(select(User).where(User.username == username))
    if not verify_password(password_hash=user.password_hash if user else None, password=password):
        return None
    if user is None or not user.is_active or user.role in SERVICE_ROLES:
        return None
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    db: Session, *, user: User, ttl: timedelta, kind: str = "api"
) -> tuple[str, AuthToken]:
    """Create a bearer token (or console session) for user; only its hash is stored."""
    token = secrets.token_urlsafe(32)
    row = AuthToken(
        token_hash=_token_hash(token), user_id=user.id, expires_at=utcnow() + ttl, kind=kind
    )
    db.add(row)
    db.flush()
    return token, row


def user_for_token(db: Session, *, token: str) -> User | None:
    """The active user behind a valid, unexpired, unrevoked token."""
    row = db.scalar(select(AuthToken).where(AuthToken.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    user = db.get(User, row.user_id)
    return user if user is not None and user.is_active else None


def revoke_token(db: Session, *, token: str) -> bool:
    """Revoke a token (logout); True if it existed."""
    row = db.scalar(select(AuthToken).where(AuthToken.token_hash == _token_hash(token)))
    if row is None:
        return False
    row.revoked_at = utcnow()
    return True


def revoke_all_tokens(db: Session, *, user: User) -> int:
    """Revoke every live token and session of a user; returns how many."""
    now = utcnow()
    rows = db.scalars(
        select(AuthToken).where(AuthToken.user_id == user.id, AuthToken.revoked_at.is_(None))
    )
    count = 0
    for row in rows:
        row.revoked_at = now
        count += 1
    return count


def set_password(db: Session, *, user: User, password: str) -> None:
    """Replace a user's password and sign them out everywhere."""
    user.password_hash = hash_password(password)
    revoke_all_tokens(db, user=user)


def set_active(db: Session, *, user: User, active: bool) -> None:
    """Activate or deactivate a user; deactivation revokes every token at once."""
    user.is_active = active
    if not active:
        revoke_all_tokens(db, user=user)
