"""Sign-in (OAuth2 password flow) and user management."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import select

from server.deps import AdminUser, CurrentUser, SessionDep, SettingsDep, oauth2_scheme
from server.orgs.models import OrgUnit
from server.users import service
from server.users.models import User
from server.users.schemas import TokenOut, UserCreate, UserOut

router = APIRouter(tags=["users"])


@router.post("/auth/token", response_model=TokenOut)
def login(
    db: SessionDep, settings: SettingsDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> TokenOut:
    """Exchange a username and password for a bearer token."""
    user = service.authenticate(db, username=form.username, password=form.password)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Wrong username or password.")
    token, row = service.issue_token(db, user=user, ttl=timedelta(hours=settings.token_ttl_hours))
    return TokenOut(access_token=token, expires_at=row.expires_at)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(
    db: SessionDep, _user: CurrentUser, token: Annotated[str, Depends(oauth2_scheme)]
) -> None:
    """Revoke the token used for this request."""
    service.revoke_token(db, token=token)


@router.get("/users/me", response_model=UserOut)
def me(user: CurrentUser) -> User:
    """The signed-in user."""
    return user


@router.get("/users", response_model=list[UserOut])
def list_users(db: SessionDep, _admin: AdminUser) -> list[User]:
    """All users (admins only)."""
    return list(db.scalars(select(User).order_by(User.username)))


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(db: SessionDep, _admin: AdminUser, body: UserCreate) -> User:
    """Add a user (admins only)."""
    if body.org_unit_id is not None and db.get(OrgUnit, body.org_unit_id) is None:
        raise HTTPException(422, detail=f"Org unit {body.org_unit_id} does not exist.")
    if db.scalar(select(User.id).where(User.username == body.username)) is not None:
        raise HTTPException(409, detail=f"The username {body.username!r} is already taken.")
    try:
        return service.create_user(db, **body.model_dump())
    except service.InvalidRole as exc:
        raise HTTPException(422, detail=str(exc)) from None
