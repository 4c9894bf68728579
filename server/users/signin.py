"""Signing in over HTTP, shared by the API's token route and the console's sign-in form."""

from __future__ import annotations

from datetime import timedelta

from fastapi import HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access.deps import client_ip
from server.access.ratelimit import LoginLimiter, too_many_attempts_detail
from server.audit import service as audit
from server.users import service
from server.users.models import AuthToken, User


def open_session(
    db: Session, request: Request, *, user: User, ttl: timedelta, kind: str
) -> tuple[str, AuthToken]:
    """Issue a bearer token (kind "api") or console session (kind "session") and audit it."""
    token, row = service.issue_token(db, user=user, ttl=ttl, kind=kind)
    audit.record(
        db,
        actor=None,
        action="auth.login",
        object_type="user",
        object_id=user.id,
        org_unit_id=user.org_unit_id,
        username=user.username,
        user_id=user.id,
        ip=client_ip(request),
        summary="API token issued" if kind == "api" else "console session",
    )
    return token, row


def sign_in(db: Session, request: Request, *, username: str, password: str) -> User:
    """Check credentials under the rate limit (429), auditing the outcome; 401 when wrong."""
    limiter: LoginLimiter = request.app.state.login_limiter
    factory = request.app.state.session_factory
    ip = client_ip(request)
    wait = limiter.begin(factory, username=username, ip=ip)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=too_many_attempts_detail(wait),
            headers={"Retry-After": str(wait)},
        )
    user = db.scalar(select(User).where(User.username == username))
    # End the read before the deliberately slow hash: no transaction stays open while it runs.
    db.commit()
    ok = service.verify_password(
        password_hash=user.password_hash if user else None, password=password
    )
    if user is None or not ok or not user.is_active:
        # The attempt's row stays in login_attempts: it is the failure the limit counts.
        audit.record(
            db,
            actor=None,
            action="auth.login_failed",
            object_type="user",
            username=username[:64],
            ip=ip,
            summary="wrong username or password",
        )
        db.commit()  # kept although the request fails
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Wrong username or password.")
    limiter.succeeded(factory, username=username, ip=ip)
    return user
