"""Mount the console: its pages, its static files and its error handling."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from server.console import (
    admin_pages,
    bulletin_pages,
    bulletin_send_pages,
    clip_pages,
    dashboard,
    device_pages,
    feedback_pages,
    live_pages,
    programme_pages,
    relay_pages,
    report_pages,
    session,
    zone_pages,
)

STATIC = Path(__file__).resolve().parent.parent / "static"


def install_console(app: FastAPI) -> None:
    """Add the console's routes (outside /api/v1 and the OpenAPI schema) to the app."""
    session.install(app)
    for module in (
        session,
        dashboard,
        device_pages,
        clip_pages,
        programme_pages,
        report_pages,
        live_pages,
        bulletin_pages,
        bulletin_send_pages,
        admin_pages,
        relay_pages,
        feedback_pages,
        zone_pages,
    ):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_api_route("/favicon.ico", favicon, include_in_schema=False)


async def favicon() -> FileResponse:
    """Browsers ask for /favicon.ico whatever the page says: the console's icon, not a 404."""
    return FileResponse(
        STATIC / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )
