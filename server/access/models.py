"""Sign-in attempts in the database, so that every server process counts the same limit."""

from __future__ import annotations

from sqlalchemy import Float, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base


class LoginAttempt(Base):
    """One failed or in-flight sign-in for a (username, client address) key."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_key_at", "key", "at"),
        Index("ix_login_attempts_at", "at"),  # the periodic prune of every key
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # sha256 of username + address: bounded, and no typed-in secret is stored readable.
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Float)  # wall clock (UNIX seconds), shared by processes
