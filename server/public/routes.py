"""The commune's public bulletin page, its RSS feed and the bulletins' audio (no sign-in)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from server.clips.storage import ClipStorage
from server.console.render import SECURITY_HEADERS, environment
from server.deps import Now, SessionDep, SettingsDep
from server.public import service

router = APIRouter(include_in_schema=False)
RSS_TYPE = "application/rss+xml; charset=utf-8"
CACHE = "public, max-age=60"
HEADERS = {**SECURITY_HEADERS, "Cache-Control": CACHE}
Code = Annotated[str, Path(description="the org unit's administrative code")]


def _render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def not_found() -> HTMLResponse:
    """The one answer for an unknown commune, bulletin or audio: nothing says which."""
    return _render("public_bulletins.html", status_code=404, unit=None, board=None, code="")


def _page_url(request: Request, code: str) -> str:
    return str(request.url_for("public_page", code=code))


@router.get("/p/{code}", response_class=HTMLResponse, name="public_page")
def public_page(db: SessionDep, now: Now, code: Code) -> HTMLResponse:
    """The commune's approved public bulletins, emergencies in force at the top."""
    unit = service.commune(db, code=code)
    if unit is None:
        return not_found()
    board = service.board(db, unit=unit, now=now)
    return _render("public_bulletins.html", unit=unit, board=board, code=quote(code), now=now)


@router.get("/p/{code}/feed.xml", name="public_feed")
def public_feed(request: Request, db: SessionDep, now: Now, code: Code) -> Response:
    """The same bulletins as an RSS 2.0 podcast (audio enclosures with absolute URLs)."""
    unit = service.commune(db, code=code)
    if unit is None:
        return not_found()
    board = service.board(db, unit=unit, now=now)

    def audio_url(bulletin_id: int) -> str:
        return str(request.url_for("public_audio", code=code, bulletin_id=str(bulletin_id)))

    document = service.rss(board, page_url=_page_url(request, code), audio_url=audio_url, now=now)
    return Response(document, media_type=RSS_TYPE, headers={"Cache-Control": CACHE})


# HEAD too: podcast apps ask for an enclosure's size before they download it.
@router.api_route("/p/{code}/audio/{bulletin_id:int}", methods=["GET", "HEAD"], name="public_audio")
def public_audio(db: SessionDep, settings: SettingsDep, code: Code, bulletin_id: int) -> Response:
    """A public bulletin's audio (Ogg/Opus, HTTP Range); 404 for anything not shown."""
    unit = service.commune(db, code=code)
    clip = None if unit is None else service.audio_clip(db, unit=unit, bulletin_id=bulletin_id)
    if clip is None:
        return not_found()
    path = ClipStorage(settings.data_dir / "clips").dist_path(clip.sha256)
    if not path.is_file():
        return not_found()
    return FileResponse(
        path,
        media_type="audio/ogg",
        filename=f"ban-tin-{bulletin_id}.ogg",
        content_disposition_type="inline",
        headers={"ETag": f'"{clip.sha256}"', "Cache-Control": CACHE},
    )
