"""The HTTP side of signing in: the app's limiter for the client of one request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from server.access.deps import client_ip
from server.access.ratelimit import LoginLimiter, SessionFactory
from server.users.signin import LoginGate


def login_gate(request: Request) -> LoginGate:
    """The app's sign-in limiter, counting attempts of this request's client address."""
    limiter: LoginLimiter = request.app.state.login_limiter
    factory: SessionFactory = request.app.state.session_factory
    return LoginGate(limiter=limiter, factory=factory, ip=client_ip(request))


# Kept apart from signin.py: server.access.deps imports the users service, which uses signin.
LoginGateDep = Annotated[LoginGate, Depends(login_gate)]
