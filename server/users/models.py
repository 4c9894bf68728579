"""Users, roles and API/session tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UtcDateTime, utcnow

ROLES = ("admin", "editor", "approver", "operator", "technician", "viewer")
# Roles no person holds: an outside source's key signs in as a service user of this role
# (server/sources); it is never offered when creating or editing a user.
SERVICE_ROLES = ("source",)


class User(Base):
    """A person who uses the console or the API, acting inside one org unit's subtree."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    # None = the whole system (the bootstrap admin, before any org unit exists).
    org_unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("org_units.id", ondelete="RESTRICT"), index=True
    )
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Operators and approvers may run emergencies only when this is set (admins always may).
    can_emergency: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


TOKEN_KINDS = ("api", "session")


class AuthToken(Base):
    """An opaque bearer token (stored hashed), so it can expire and be revoked."""

    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # "api": a bearer token; "session": the console's HTTP-only cookie (needs a CSRF token).
    kind: Mapped[str] = mapped_column(String(16), default="api", server_default="api")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
