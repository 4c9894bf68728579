"""API shapes for users and tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from server.bounds import Id, RequestBody
from server.users.models import ROLES

Password = Annotated[str, Field(min_length=8, max_length=200)]


class TokenOut(BaseModel):
    """OAuth2 password-flow answer."""

    access_token: str
    token_type: str = "bearer"
    expires_at: datetime


class UserOut(BaseModel):
    """A user as the API shows it (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    full_name: str
    role: str
    org_unit_id: int | None
    is_active: bool
    can_emergency: bool
    created_at: datetime


class MeOut(UserOut):
    """The signed-in user with what their role allows."""

    permissions: list[str]
    may_run_emergency: bool


class UserCreate(RequestBody):
    """A new user."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    password: Password
    full_name: str = Field(default="", max_length=200)
    role: str = Field(max_length=32, description=f"one of {', '.join(ROLES)}")
    org_unit_id: Id | None = None
    can_emergency: bool = Field(
        default=False, description="operators and approvers: may run emergency broadcasts"
    )


class UserUpdate(RequestBody):
    """Changes to a user (role, org unit, name, emergency permission)."""

    model_config = ConfigDict(extra="forbid")

    full_name: str | None = Field(default=None, max_length=200)
    role: str | None = Field(default=None, max_length=32, description=f"one of {', '.join(ROLES)}")
    org_unit_id: Id | None = None
    can_emergency: bool | None = None


class PasswordReset(RequestBody):
    """A new password set by an administrator."""

    model_config = ConfigDict(extra="forbid")

    password: Password


class PasswordChange(RequestBody):
    """A user changing their own password."""

    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=200)
    new_password: Password
