"""The console's error page: outside any route, so it opens its own short read-only session."""

from __future__ import annotations

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.access.actor import Actor, load_actor
from server.access.deps import SESSION_COOKIE, client_ip
from server.console.render import page
from server.db import session_scope
from server.users import accounts as users


async def http_error(request: Request, exc: Exception) -> Response:
    """JSON for the API (unchanged); a page in the user's language for the console."""
    assert isinstance(exc, StarletteHTTPException)
    if request.url.path.startswith(("/api/", "/static/")) or exc.status_code < 400:
        return await http_exception_handler(request, exc)
    key = {403: "error.forbidden", 404: "error.not_found"}.get(exc.status_code, "error.other")
    # A signed-in user keeps the menu and the sign-out link on an error page.
    actor = await run_in_threadpool(_actor_or_none, request)
    return page(
        request,
        "error.html",
        actor=actor,
        status_code=exc.status_code,
        message_key=key,
        detail=str(exc.detail),
    )


def _actor_or_none(request: Request) -> Actor | None:
    """The console user of this request's session cookie, if it is still valid."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    with session_scope(request.app.state.session_factory) as db:
        user = users.user_for_token(db, token=token)
        if user is None:
            return None
        # expire_on_commit is off: the page may read the user's name after this closes.
        return load_actor(db, user=user, ip=client_ip(request), via_cookie=True)
