"""The rate-limited password check under the sign-in use case (API token and console form)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access.ratelimit import LoginLimiter, SessionFactory, too_many_attempts_detail
from server.domain import DomainError
from server.users.accounts import verify_password
from server.users.models import SERVICE_ROLES, User


class TooManyAttempts(DomainError):
    """429: too many failed sign-ins for this username from this address."""

    def __init__(self, wait_s: int) -> None:
        super().__init__(429, too_many_attempts_detail(wait_s))
        self.headers = {"Retry-After": str(wait_s)}


@dataclass(frozen=True)
class LoginGate:
    """The sign-in limiter as one request sees it: counted in its own short sessions."""

    limiter: LoginLimiter
    factory: SessionFactory
    ip: str

    def begin(self, username: str) -> int:
        """Register the attempt: 0 = go on, else the seconds to wait."""
        return self.limiter.begin(self.factory, username=username, ip=self.ip)

    def succeeded(self, username: str) -> None:
        """The password was right: the key's failures are forgotten."""
        self.limiter.succeeded(self.factory, username=username, ip=self.ip)


def check_password(db: Session, *, gate: LoginGate, username: str, password: str) -> User | None:
    """The active user with these credentials, None when wrong; 429 over the limit.

    On None the attempt's row stays in login_attempts: it is the failure the limit counts.
    """
    wait = gate.begin(username)
    if wait:
        raise TooManyAttempts(wait)
    user = db.scalar(select(User).where(User.username == username))
    # End the read before the deliberately slow hash: no transaction stays open while it runs.
    db.commit()
    ok = verify_password(password_hash=user.password_hash if user else None, password=password)
    # A service user (an outside source) signs in with its key only, never a password.
    if user is None or not ok or not user.is_active or user.role in SERVICE_ROLES:
        return None
    gate.succeeded(username)
    return user


def keep_failure(db: Session) -> None:
    """Commit the failed attempt's audit entry: kept although the request fails.

    Deliberately not left to the route's session, which rolls back with the 401: every
    failed sign-in must stay in the audit log (the limit itself counts login_attempts rows,
    which the limiter commits in its own sessions).
    """
    db.commit()
