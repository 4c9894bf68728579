"""FastAPI dependencies: settings, the database session, the clock (sign-in: access.deps)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.db import utcnow
from server.settings import ServerSettings


def get_settings(request: Request) -> ServerSettings:
    """The settings the app was created with."""
    settings: ServerSettings = request.app.state.settings
    return settings


def now_of(request: Request) -> datetime:
    """The app's clock (tests replace app.state.clock)."""
    clock = getattr(request.app.state, "clock", utcnow)
    value: datetime = clock()
    return value


def get_db(request: Request) -> Iterator[Session]:
    """A session per request, committed when the route returns without error."""
    session: Session = request.app.state.session_factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
Now = Annotated[datetime, Depends(now_of)]  # the app's clock, read once per request
# scope="function": commit before the response leaves. With FastAPI's default ("request") the
# commit ran after sending, so a client acting on the answer (a browser following the sign-in
# redirect, a script submitting the programme it just created) could arrive first and find
# nothing; and a failed commit went unreported.
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
