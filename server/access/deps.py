"""The one sign-in and permission check every API route goes through: `allow(PERMISSION)`."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import OAuth2PasswordBearer, SecurityScopes

from server.access import policy
from server.access.actor import Actor, load_actor
from server.access.proxies import forwarded_client, parse_trusted_proxies
from server.deps import SessionDep
from server.sources import keys as source_keys
from server.users import accounts as users
from server.users.models import User

SESSION_COOKIE = "loa_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token", auto_error=False, scopes=policy.DESCRIPTIONS
)


def client_ip(request: Request) -> str:
    """The client's address: the peer, or X-Forwarded-For's when the peer is a trusted proxy.

    `loa-server serve` turns uvicorn's own proxy-header handling off (it trusts 127.0.0.1 by
    default), so request.client is the real peer and LOA_TRUSTED_PROXIES alone decides.
    """
    peer = request.client.host if request.client else "unknown"
    trusted = parse_trusted_proxies(request.app.state.settings.trusted_proxies)
    if not trusted:
        return peer
    return forwarded_client(peer, request.headers.getlist("x-forwarded-for"), trusted)


def csrf_token_for(session_token: str) -> str:
    """The CSRF token bound to a console session: only a page that read it can send it back."""
    return hmac.new(session_token.encode(), b"loa-csrf-v1", hashlib.sha256).hexdigest()


def _unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="Not signed in, or the session has expired. Sign in again.",
        headers={"WWW-Authenticate": "Bearer"},
    )


def authorize(
    security: SecurityScopes,
    request: Request,
    db: SessionDep,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
) -> Actor:
    """The signed-in caller, if their role holds every permission the route names; else 401/403.

    A bearer token wins over the console cookie; a cookie-authenticated request that changes
    something must carry the session's CSRF token in the X-CSRF-Token header. A bearer token
    starting with the source-key prefix signs in as that source's service user (role
    "source"), which then meets the same permission check as a person.
    """
    via_cookie = False
    token = bearer
    if not token:
        token = request.cookies.get(SESSION_COOKIE)
        via_cookie = True
    user: User | None = None
    if token and not via_cookie and source_keys.is_source_key(token):
        # An outside source's key (bearer only): its service user, every use audited.
        user = source_keys.sign_in_with_key(
            db,
            key=token,
            method=request.method,
            path=request.url.path,
            ip=client_ip(request),
        )
    elif token:
        user = users.user_for_token(db, token=token)
    if user is None or token is None:
        raise _unauthorized()
    if via_cookie and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), csrf_token_for(token).encode()):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail="The form has expired (CSRF token missing or wrong). Reload the page.",
            )
    missing = [p for p in security.scopes if not policy.may(user.role, p)]
    if missing:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"Your role ({user.role}) may not do this: it needs {missing[0]!r} "
            f"({policy.DESCRIPTIONS.get(missing[0], missing[0])}).",
        )
    return load_actor(db, user=user, ip=client_ip(request), via_cookie=via_cookie)


def allow(permission: str) -> Any:
    """Route parameter default: sign-in plus one permission; shows as the OAuth2 scope."""
    if permission not in policy.PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    return Security(authorize, scopes=[permission])


def bearer_token(bearer: Annotated[str | None, Depends(oauth2_scheme)], request: Request) -> str:
    """The raw token of this request (bearer or cookie), for signing out."""
    token = bearer or request.cookies.get(SESSION_COOKIE)
    if not token:
        raise _unauthorized()
    return token
