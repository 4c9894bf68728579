"""Sign-in (OAuth2 password flow), sign-out, and user management for administrators."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, status
from fastapi.security import OAuth2PasswordRequestForm

from server.access import policy
from server.access.actor import Actor
from server.access.deps import allow, bearer_token
from server.access.policy import SESSION, USERS_MANAGE
from server.bounds import IdPath
from server.deps import SessionDep, SettingsDep
from server.openapi import problems
from server.users import service
from server.users.deps import LoginGateDep
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
    settings: SettingsDep,
    gate: LoginGateDep,
    form: Annotated[SignInForm, Depends()],
) -> TokenOut:
    """Exchange a username and password for a bearer token (failures are rate-limited)."""
    token, row = service.sign_in(
        db,
        gate=gate,
        username=form.username,
        password=form.password,
        ttl=timedelta(hours=settings.token_ttl_hours),
        kind="api",
    )
    return TokenOut(access_token=token, expires_at=row.expires_at)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(
    db: SessionDep,
    actor: Annotated[Actor, allow(SESSION)],
    token: Annotated[str, Depends(bearer_token)],
) -> None:
    """Revoke the token (or console session) used for this request."""
    service.sign_out(db, actor=actor, token=token)


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
    service.change_own_password(
        db, actor=actor, current_password=body.current_password, new_password=body.new_password
    )


@router.get("/users", response_model=list[UserOut])
def list_users(db: SessionDep, actor: Manager) -> list[User]:
    """Users of the caller's org subtree."""
    return service.list_users(db, actor=actor)


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(db: SessionDep, actor: Manager, body: UserCreate) -> User:
    """Add a user inside the caller's org subtree."""
    return service.create(
        db,
        actor=actor,
        username=body.username,
        password=body.password,
        role=body.role,
        org_unit_id=body.org_unit_id,
        full_name=body.full_name,
        can_emergency=body.can_emergency,
    )


@router.get("/users/{user_id:int}", response_model=UserOut)
def get_user(db: SessionDep, actor: Manager, user_id: IdPath) -> User:
    """One user of the caller's subtree."""
    return service.get(db, actor=actor, user_id=user_id)


@router.patch("/users/{user_id:int}", response_model=UserOut)
def update_user(db: SessionDep, actor: Manager, user_id: IdPath, body: UserUpdate) -> User:
    """Change a user's role, org unit, name or emergency permission."""
    changes = body.model_dump(exclude_unset=True)
    return service.update(db, actor=actor, user_id=user_id, changes=changes)


@router.post("/users/{user_id:int}/deactivate", response_model=UserOut)
def deactivate_user(db: SessionDep, actor: Manager, user_id: IdPath) -> User:
    """Block a user: every token and session of theirs stops working at once."""
    return service.deactivate(db, actor=actor, user_id=user_id)


@router.post("/users/{user_id:int}/activate", response_model=UserOut)
def activate_user(db: SessionDep, actor: Manager, user_id: IdPath) -> User:
    """Let a deactivated user sign in again (old tokens stay revoked)."""
    return service.activate(db, actor=actor, user_id=user_id)


@router.post("/users/{user_id:int}/password", status_code=status.HTTP_204_NO_CONTENT)
def reset_password(db: SessionDep, actor: Manager, user_id: IdPath, body: PasswordReset) -> None:
    """Set a new password for a user; they are signed out everywhere."""
    service.reset_password(db, actor=actor, user_id=user_id, password=body.password)
