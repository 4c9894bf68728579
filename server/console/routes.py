"""Mount the console: its pages, its static files and its error handling."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from server.console import (
    admin_pages,
    clip_pages,
    dashboard,
    device_pages,
    live_pages,
    programme_pages,
    report_pages,
    session,
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
        admin_pages,
    ):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
