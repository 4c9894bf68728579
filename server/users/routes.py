"""Sign-in (OAuth2 password flow), sign-out, and user management for administrators."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access import policy
from server.access.actor import Actor
from server.access.deps import allow, bearer_token, client_ip
from server.access.policy import SESSION, USERS_MANAGE
from server.access.ratelimit import LoginLimiter, too_many_attempts_detail
from server.access.reach import check_org_unit, visible_user
from server.audit import service as audit
from server.bounds import IdPath
from server.deps import SessionDep, SettingsDep
from server.openapi import problems
from server.users import service
from server.users.models import AuthToken, User
from server.users.schemas import (
    MeOut,
    PasswordChange,
    PasswordReset,
    TokenOut,
    UserCreate,
    UserOut,
    UserUpdate,
)

router = APIRouter(tags=["users"])
Manager = Annotated[Actor, allow(USERS_MANAGE)]


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


def sign_in(db: SessionDep, request: Request, *, username: str, password: str) -> User:
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


@router.post("/auth/token", response_model=TokenOut, responses=problems(401, 429, 503))
def login(
    db: SessionDep,
    request: Request,
    settings: SettingsDep,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> TokenOut:
    """Exchange a username and password for a bearer token (failures are rate-limited)."""
    user = sign_in(db, request, username=form.username, password=form.password)
    token, row = open_session(
        db, request, user=user, ttl=timedelta(hours=settings.token_ttl_hours), kind="api"
    )
    return TokenOut(access_token=token, expires_at=row.expires_at)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(
    db: SessionDep,
    actor: Annotated[Actor, allow(SESSION)],
    token: Annotated[str, Depends(bearer_token)],
) -> None:
    """Revoke the token (or console session) used for this request."""
    service.revoke_token(db, token=token)
    audit.record(
        db,
        actor=actor,
        action="auth.logout",
        object_type="user",
        object_id=actor.user.id,
        org_unit_id=actor.user.org_unit_id,
    )


@router.get("/users/me", response_model=MeOut)
def me(actor: Annotated[Actor, allow(SESSION)]) -> MeOut:
    """The signed-in user and what their role allows."""
    return MeOut(
        **UserOut.model_validate(actor.user).model_dump(),
        permissions=sorted(policy.grants(actor.role)),
        may_run_emergency=actor.may_run_emergency(),
    )


@router.post("/users/me/password", status_code=status.HTTP_204_NO_CONTENT)
def change_own_password(
    db: SessionDep, actor: Annotated[Actor, allow(SESSION)], body: PasswordChange
) -> None:
    """Change your own password; every session and token of yours ends."""
    user = actor.user
    if service.authenticate(db, username=user.username, password=body.current_password) is None:
        raise HTTPException(422, detail="The current password is wrong.")
    service.set_password(db, user=user, password=body.new_password)
    audit.record(
        db,
        actor=actor,
        action="user.password_changed",
        object_type="user",
        object_id=user.id,
        org_unit_id=user.org_unit_id,
    )


@router.get("/users", response_model=list[UserOut])
def list_users(db: SessionDep, actor: Manager) -> list[User]:
    """Users of the caller's org subtree."""
    query = select(User).where(actor.org_clause(User.org_unit_id)).order_by(User.username)
    return list(db.scalars(query))


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(db: SessionDep, actor: Manager, body: UserCreate) -> User:
    """Add a user inside the caller's org subtree."""
    check_org_unit(db, actor, body.org_unit_id)
    if db.scalar(select(User.id).where(User.username == body.username)) is not None:
        raise HTTPException(409, detail=f"The username {body.username!r} is already taken.")
    try:
        user = service.create_user(db, **body.model_dump())
    except service.InvalidRole as exc:
        raise HTTPException(422, detail=str(exc)) from None
    audit.record(
        db,
        actor=actor,
        action="user.create",
        object_type="user",
        object_id=user.id,
        org_unit_id=user.org_unit_id,
        summary=f"{user.username} ({user.role})",
        details={"role": user.role, "can_emergency": user.can_emergency},
    )
    return user


@router.get("/users/{user_id:int}", response_model=UserOut)
def get_user(db: SessionDep, actor: Manager, user_id: IdPath) -> User:
    """One user of the caller's subtree."""
    return visible_user(db, actor, user_id)


def _not_self(actor: Actor, user: User, what: str) -> None:
    if user.id == actor.user.id:
        raise HTTPException(
            409, detail=f"You cannot {what} your own account; ask another administrator."
        )


@router.patch("/users/{user_id:int}", response_model=UserOut)
def update_user(db: SessionDep, actor: Manager, user_id: IdPath, body: UserUpdate) -> User:
    """Change a user's role, org unit, name or emergency permission."""
    user = visible_user(db, actor, user_id)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if "role" in changes:
        try:
            service.check_role(changes["role"])
        except service.InvalidRole as exc:
            raise HTTPException(422, detail=str(exc)) from None
        if changes["role"] != user.role:
            _not_self(actor, user, "change the role of")
    if "org_unit_id" in changes:
        check_org_unit(db, actor, changes["org_unit_id"])
        if changes["org_unit_id"] != user.org_unit_id:
            _not_self(actor, user, "move")
    before = {k: getattr(user, k) for k in changes}
    for key, value in changes.items():
        setattr(user, key, value)
    if before.get("role", user.role) != user.role or (
        before.get("org_unit_id", user.org_unit_id) != user.org_unit_id
    ):
        service.revoke_all_tokens(db, user=user)  # new rights start with a new sign-in
    audit.record(
        db,
        actor=actor,
        action="user.update",
        object_type="user",
        object_id=user.id,
        org_unit_id=user.org_unit_id,
        summary=user.username,
        details={"before": before, "after": changes},
    )
    return user


@router.post("/users/{user_id:int}/deactivate", response_model=UserOut)
def deactivate_user(db: SessionDep, actor: Manager, user_id: IdPath) -> User:
    """Block a user: every token and session of theirs stops working at once."""
    user = visible_user(db, actor, user_id)
    _not_self(actor, user, "deactivate")
    service.set_active(db, user=user, active=False)
    audit.record(
        db,
        actor=actor,
        action="user.deactivate",
        object_type="user",
        object_id=user.id,
        org_unit_id=user.org_unit_id,
        summary=user.username,
    )
    return user


@router.post("/users/{user_id:int}/activate", response_model=UserOut)
def activate_user(db: SessionDep, actor: Manager, user_id: IdPath) -> User:
    """Let a deactivated user sign in again (old tokens stay revoked)."""
    user = visible_user(db, actor, user_id)
    service.set_active(db, user=user, active=True)
    audit.record(
        db,
        actor=actor,
        action="user.activate",
        object_type="user",
        object_id=user.id,
        org_unit_id=user.org_unit_id,
        summary=user.username,
    )
    return user


@router.post("/users/{user_id:int}/password", status_code=status.HTTP_204_NO_CONTENT)
def reset_password(db: SessionDep, actor: Manager, user_id: IdPath, body: PasswordReset) -> None:
    """Set a new password for a user; they are signed out everywhere."""
    user = visible_user(db, actor, user_id)
    service.set_password(db, user=user, password=body.password)
    audit.record(
        db,
        actor=actor,
        action="user.password_reset",
        object_type="user",
        object_id=user.id,
        org_unit_id=user.org_unit_id,
        summary=user.username,
    )
