"""The board's local web page: aiohttp on 127.0.0.1, read by Chromium in kiosk mode.

GET / (the whole page), /board (the content fragment the page swaps in), /state.json,
/events (Server-Sent Events: one `board` event per change, comments as keep-alive),
/healthz and /static/*. Every text is escaped by Jinja2; nothing here writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from edge_agent.eboard.board import Board
from edge_agent.eboard.state import BoardState
from firmware_profiles.schema import DisplayConfig

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"  # the page is for the screen beside the Pi, never the network
KEEPALIVE_S = 15.0
SHUTDOWN_S = 1.0  # open connections get this long to finish when the agent stops
RETRY_MS = 2000  # how soon EventSource reconnects after the agent restarts

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_board(state: BoardState) -> str:
    """The content fragment (also embedded in the full page)."""
    return _env.get_template("board.html").render(state=state)


def render_page(state: BoardState, *, orientation: str) -> str:
    """The full page."""
    return _env.get_template("page.html").render(
        state=state,
        orientation=orientation,
        board=Markup(render_board(state)),  # escaped already
    )


class BoardServer:
    """Serves one board's page until stop()."""

    def __init__(self, *, board: Board, display: DisplayConfig, port: int) -> None:
        self.board = board
        self.display = display
        self.port = port
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        app = web.Application()
        app.add_routes(
            [
                web.get("/", self._page),
                web.get("/board", self._fragment),
                web.get("/state.json", self._state),
                web.get("/events", self._events),
                web.get("/healthz", self._health),
                web.static("/static", HERE / "static", show_index=False, follow_symlinks=False),
            ]
        )
        self.app = app

    async def start(self) -> str:
        """Bind and serve; return the URL (OSError when the port is taken)."""
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_S
        )
        await runner.setup()
        site = web.TCPSite(runner, HOST, self.port, reuse_address=False)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server  # aiohttp exposes the bound port only through the server
        sockets = getattr(server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else self.port
        self.url = f"http://{HOST}:{port}/"
        return self.url

    async def stop(self) -> None:
        """Close the open connections (event streams too) and the socket."""
        for task in self._streams:
            task.cancel()  # an event stream never ends on its own
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers -----------------------------------------------------------------------------

    async def _page(self, _request: web.Request) -> web.Response:
        html = render_page(self.board.current(), orientation=self.display.orientation)
        return web.Response(text=html, content_type="text/html", headers=_NO_CACHE)

    async def _fragment(self, _request: web.Request) -> web.Response:
        html = render_board(self.board.current())
        return web.Response(text=html, content_type="text/html", headers=_NO_CACHE)

    async def _state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.board.current().to_json(), headers=_NO_CACHE)

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            revision = self.board.revision
            await response.write(_event(self.board.current()))
            while True:
                seen = await self.board.wait_change(revision, KEEPALIVE_S)
                if seen == revision:
                    await response.write(b": keep-alive\n\n")
                    continue
                revision = seen
                await response.write(_event(self.board.state))
        except ConnectionError:
            pass  # the page went away; it reconnects on its own
        finally:
            self._streams.discard(task)
        return response


_NO_CACHE = {"Cache-Control": "no-store"}


def _event(state: BoardState) -> bytes:
    data: Any = state.to_json()
    return f"event: board\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
