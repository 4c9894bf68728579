"""Console sign-in: an HTTP-only session cookie, CSRF tokens, sign-out, language switch."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.access.actor import Actor, load_actor
from server.access.deps import SESSION_COOKIE, client_ip, csrf_token_for
from server.console.errors import http_error
from server.console.i18n import LANG_COOKIE, LANGS
from server.console.render import page
from server.deps import SessionDep, SettingsDep
from server.domain import DomainError
from server.users import accounts
from server.users import service as users
from server.users.deps import LoginGateDep

router = APIRouter(include_in_schema=False)
LOGIN_COOKIE = "loa_login"  # the sign-in form's own CSRF token (double submit)


class SignInRequired(Exception):
    """No valid console session: send the browser to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def safe_next(value: str | None) -> str:
    """A same-site path to return to after signing in (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def console_actor(request: Request, db: SessionDep) -> Actor:
    """The signed-in console user, or a redirect to the sign-in page."""
    token = request.cookies.get(SESSION_COOKIE)
    user = accounts.user_for_token(db, token=token) if token else None
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return load_actor(db, user=user, ip=client_ip(request), via_cookie=True)


ConsoleActor = Annotated[Actor, Depends(console_actor)]


def check_form_csrf(request: Request, sent: str) -> None:
    """A console form posted without this session's CSRF token is refused."""
    session = request.cookies.get(SESSION_COOKIE, "")
    if not session or not hmac.compare_digest(sent.encode(), csrf_token_for(session).encode()):
        raise HTTPException(403, detail="The form has expired. Reload the page and try again.")


def _login_page(
    request: Request, *, error: str = "", next_path: str = "/", status_code: int = 200
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        "login.html",
        actor=None,
        error=error,
        next_path=next_path,
        login_csrf=token,
        status_code=status_code,
    )
    secure = request.app.state.settings.cookie_secure
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/login",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    """The sign-in page."""
    return _login_page(request, next_path=safe_next(next))


@router.post("/login", response_model=None)
def login(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    gate: LoginGateDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    """Check the credentials (rate-limited) and start a console session."""
    next_path = safe_next(next)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf.encode(), expected.encode()):
        return _login_page(request, error="login.expired", next_path=next_path, status_code=403)
    ttl = timedelta(hours=settings.session_ttl_hours)
    try:
        token, _row = users.sign_in(
            db, gate=gate, username=username.strip(), password=password, ttl=ttl, kind="session"
        )
    except DomainError as exc:
        error = "login.too_many" if exc.status == 429 else "login.wrong"
        return _login_page(request, error=error, next_path=next_path, status_code=exc.status)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ttl.total_seconds()),
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout", response_model=None)
def logout(
    request: Request,
    db: SessionDep,
    actor: ConsoleActor,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """End the console session (the token is revoked, not just forgotten)."""
    check_form_csrf(request, csrf)
    users.sign_out(db, actor=actor, token=request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{code}", response_model=None)
def switch_language(code: str, next: str = "/") -> Response:
    """Remember the chosen language (vi or en) and go back."""
    response = RedirectResponse(safe_next(next), status_code=303)
    if code in LANGS:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="lax", path="/")
    return response


async def _sign_in_redirect(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}", status_code=303)


def install(app: FastAPI) -> None:
    """Register the redirect to the sign-in page and the console's error pages."""
    app.add_exception_handler(SignInRequired, _sign_in_redirect)
    app.add_exception_handler(StarletteHTTPException, http_error)
