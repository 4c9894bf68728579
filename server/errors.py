"""JSON errors with a human-readable `detail`, never a stack trace."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _describe(error: dict[str, object]) -> str:
    loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "form")]  # type: ignore[attr-defined]
    where = ".".join(loc) or "request"
    return f"{where}: {error.get('msg', 'invalid value')}"


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 whose detail reads as a sentence; the raw list stays available under `errors`."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    detail = "Invalid request: " + "; ".join(_describe(e) for e in errors[:5])
    safe = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in errors[:20]]
    return JSONResponse(status_code=422, content={"detail": detail, "errors": safe})


async def integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    """A uniqueness or reference conflict the service did not foresee."""
    log.warning("integrity error: %s", exc)
    return JSONResponse(
        status_code=409,
        content={"detail": "This conflicts with existing data (duplicate or in use)."},
    )


async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """The database is locked or unreachable: retry later."""
    log.error("database unavailable: %s", exc)
    return JSONResponse(
        status_code=503,
        content={"detail": "The database is busy or unreachable; try again shortly."},
    )


async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
    """Anything else: log it with an id the operator can quote."""
    ref = uuid.uuid4().hex[:8]
    log.exception("unhandled error %s", ref, exc_info=exc)
    return JSONResponse(
        status_code=500,
        content={"detail": f"Internal error (reference {ref}); the server log has the details."},
    )


class AllowOn405:
    """Every 405 carries `Allow` with all the methods of the path (RFC 9110).

    Starlette names only the methods of the first route whose path matched, and the console's
    error page drops the header; the full set is only known across all routes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_scope = dict(scope)  # routing rewrites path and root_path in `scope` itself

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                headers.append((b"allow", ", ".join(_methods_of(request_scope)).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_allow)


def _methods_of(scope: Scope) -> list[str]:
    """The methods some route of the app accepts on this path (probed: routers may nest)."""
    allowed: set[str] = set()
    for route in scope["app"].router.routes:
        if isinstance(route, Mount):  # matches any method; static files take GET and HEAD
            if isinstance(route.app, StaticFiles) and route.matches(scope)[0] is Match.FULL:
                allowed |= {"GET", "HEAD"}
            continue
        allowed |= {m for m in METHODS if route.matches({**scope, "method": m})[0] is Match.FULL}
    return [m for m in METHODS if m in allowed]


def install(app: FastAPI) -> None:
    """Register the handlers and the Allow header of 405 answers."""
    app.add_middleware(AllowOn405)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(IntegrityError, integrity_error)
    app.add_exception_handler(OperationalError, unavailable)
    app.add_exception_handler(Exception, unexpected)
