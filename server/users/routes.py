"""Sign-in (OAuth2 password flow), sign-out, and user management for administrators."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import select

from server.access import policy
from server.access.actor import Actor
from server.access.deps import allow, bearer_token
from server.access.policy import SESSION, USERS_MANAGE
from server.access.reach import check_org_unit, visible_user
from server.audit import service as audit
from server.bounds import IdPath
from server.deps import SessionDep, SettingsDep
from server.openapi import problems
from server.users import service
from server.users.models import User
from server.users.schemas import (
    MeOut,
    PasswordChange,
    PasswordReset,
    TokenOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from server.users.signin import open_session, sign_in

router = APIRouter(tags=["users"])
Manager = Annotated[Actor, allow(USERS_MANAGE)]


class SignInForm(OAuth2PasswordRequestForm):
    """The OAuth2 password form, every field bounded (a megabyte password is not hashed)."""

    def __init__(
        self,
        *,
        grant_type: Annotated[str | None, Form(pattern="^password$", max_length=8)] = None,
        username: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=200, json_schema_extra={"format": "password"})],
        scope: Annotated[str, Form(max_length=1000)] = "",
        client_id: Annotated[str | None, Form(max_length=200)] = None,
        client_secret: Annotated[str | None, Form(max_length=200)] = None,
    ) -> None:
        super().__init__(
            grant_type=grant_type, username=username, password=password, scope=scope,
            client_id=client_id, client_secret=client_secret,
        )  # fmt: skip


@router.post("/auth/token", response_model=TokenOut, responses=problems(401, 429, 503))
def login(
    db: SessionDep,
    request: Request,
    settings: SettingsDep,
    form: Annotated[SignInForm, Depends()],
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
