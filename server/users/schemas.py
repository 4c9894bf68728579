"""API shapes for users and tokens."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from server.users.models import ROLES


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
    created_at: datetime


class UserCreate(BaseModel):
    """A new user."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    password: str = Field(min_length=8, max_length=200)
    full_name: str = Field(default="", max_length=200)
    role: str = Field(description=f"one of {', '.join(ROLES)}")
    org_unit_id: int | None = None
