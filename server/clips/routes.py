"""Clip library: upload, TTS, compose, list, fetch audio, delete."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.clips import schemas, service
from server.clips.models import Clip
from server.clips.storage import ClipStorage
from server.clips.upload import UploadError, receive_upload
from server.deps import CurrentUser, SessionDep, SettingsDep
from server.settings import ServerSettings

log = logging.getLogger(__name__)
router = APIRouter(tags=["clips"])


def get_storage(settings: SettingsDep) -> ClipStorage:
    """The clip store under LOA_DATA_DIR."""
    return ClipStorage(settings.data_dir / "clips")


StorageDep = Annotated[ClipStorage, Depends(get_storage)]


def _clip_or_404(db: Session, clip_id: int) -> Clip:
    clip = db.get(Clip, clip_id)
    if clip is None:
        raise HTTPException(404, detail=f"Clip {clip_id} does not exist.")
    return clip


def _answer(clip: Clip, created: bool) -> JSONResponse:
    body = schemas.ClipOut.model_validate(clip).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if created else 200)


async def _run(db: Session, fn, **kwargs) -> tuple[Clip, bool]:  # type: ignore[no-untyped-def]
    """Run a blocking ingest in a thread, mapping its errors to HTTP answers."""
    try:
        clip, created = await asyncio.to_thread(fn, db, **kwargs)
        db.commit()
    except service.ClipError as exc:
        db.rollback()
        raise HTTPException(exc.status, detail=exc.detail) from None
    except IntegrityError:
        db.rollback()  # the same audio arrived twice at once: answer with the stored clip
        raise HTTPException(409, detail="This audio was just uploaded by someone else.") from None
    return clip, created


def _meta(settings: ServerSettings, user: CurrentUser, **fields: str | None) -> service.ClipMeta:
    title = fields.get("title") or ""
    topic = fields.get("topic") or None
    try:
        service.check_meta(title=title, topic=topic)
    except service.ClipError as exc:
        raise HTTPException(exc.status, detail=exc.detail) from None
    return service.ClipMeta(
        title=title,
        topic=topic,
        language=(fields.get("language") or "vi")[:16],
        notes=(fields.get("notes") or "")[:2000],
        source=fields.get("source") or "upload",
        org_unit_id=user.org_unit_id,
        user_id=user.id,
    )


@router.post(
    "/clips",
    response_model=schemas.ClipOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "the same audio was already in the library"}},
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "title"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "title": {"type": "string"},
                            "topic": {"type": "string", "enum": list(schemas.TOPICS)},
                            "language": {"type": "string"},
                            "notes": {"type": "string"},
                        },
                    }
                }
            },
            "required": True,
        }
    },
)
async def upload_clip(
    request: Request, db: SessionDep, settings: SettingsDep, storage: StorageDep, user: CurrentUser
) -> JSONResponse:
    """Upload any audio (or video) file; it is checked, loudness-normalised and stored."""
    tmp = await asyncio.to_thread(storage.temp_path, ".upload")
    try:
        received = await receive_upload(request, dest=tmp, max_bytes=settings.clip_max_bytes)
    except UploadError as exc:
        raise HTTPException(exc.status, detail=exc.detail) from None
    try:
        meta = _meta(settings, user, **received.fields)
        if received.size == 0:
            raise HTTPException(422, detail="The file is empty.")
    except HTTPException:
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
        raise
    clip, created = await _run(
        db,
        service.ingest_file,
        storage=storage,
        settings=settings,
        src=tmp,
        original_sha256=received.sha256,
        filename=received.filename,
        meta=meta,
    )
    return _answer(clip, created)


@router.post("/clips/tts", response_model=schemas.ClipOut, status_code=status.HTTP_201_CREATED)
async def tts_clip(
    body: schemas.TtsRequest,
    db: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    user: CurrentUser,
) -> JSONResponse:
    """Make a clip from Vietnamese text (espeak-ng, or Piper when a model is configured)."""
    title = body.title or body.text.strip()[:80] or "TTS"
    meta = _meta(settings, user, title=title, topic=body.topic, source="tts")
    clip, created = await _run(
        db, service.make_tts_clip, storage=storage, settings=settings, req=body, meta=meta
    )
    return _answer(clip, created)


@router.post("/clips/compose", response_model=schemas.ClipOut, status_code=status.HTTP_201_CREATED)
async def compose_clip(
    body: schemas.ComposeRequest,
    db: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    user: CurrentUser,
) -> JSONResponse:
    """Build an announcement from a chime, clips, spoken text and pauses."""
    meta = _meta(settings, user, title=body.title, topic=body.topic, source="compose")
    clip, created = await _run(
        db, service.make_composed_clip, storage=storage, settings=settings, req=body, meta=meta
    )
    return _answer(clip, created)


@router.get("/clips", response_model=schemas.ClipPage)
def list_clips(
    db: SessionDep,
    _u: CurrentUser,
    q: str | None = None,
    topic: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> schemas.ClipPage:
    """Clips, newest first; search by title or notes, filter by topic."""
    if not 1 <= limit <= 500 or offset < 0:
        raise HTTPException(422, detail="limit must be 1-500 and offset must not be negative.")
    rows, total = service.list_clips(db, q=q, topic=topic, limit=limit, offset=offset)
    return schemas.ClipPage(items=[schemas.ClipOut.model_validate(c) for c in rows], total=total)


@router.get("/clips/{clip_id}", response_model=schemas.ClipDetail)
def get_clip(db: SessionDep, _u: CurrentUser, clip_id: int) -> Clip:
    """A clip's metadata and waveform peaks."""
    return _clip_or_404(db, clip_id)


@router.get("/clips/{clip_id}/audio", response_model=None)
def clip_audio(
    db: SessionDep,
    storage: StorageDep,
    _u: CurrentUser,
    clip_id: int,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The normalised Ogg/Opus file (HTTP Range supported; the ETag is its sha256)."""
    clip = _clip_or_404(db, clip_id)
    etag = f'"{clip.sha256}"'
    if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers={"ETag": etag})
    path = storage.dist_path(clip.sha256)
    if not path.exists():
        raise HTTPException(410, detail="The clip's audio file is missing from the store.")
    return FileResponse(
        path,
        media_type="audio/ogg",
        filename=f"clip-{clip.id}.opus",
        headers={"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"},
    )


@router.get("/clips/{clip_id}/original", response_model=None)
def clip_original(db: SessionDep, storage: StorageDep, _u: CurrentUser, clip_id: int) -> Response:
    """The file exactly as it was uploaded."""
    clip = _clip_or_404(db, clip_id)
    path = storage.orig_path(clip.original_sha256, clip.original_ext)
    if not path.exists():
        raise HTTPException(410, detail="The original file is missing from the store.")
    return FileResponse(
        path,
        filename=clip.original_filename or f"clip-{clip.id}{clip.original_ext}",
        headers={"ETag": f'"{clip.original_sha256}"'},
    )


@router.delete("/clips/{clip_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_clip(db: SessionDep, storage: StorageDep, _u: CurrentUser, clip_id: int) -> None:
    """Delete a clip unless a programme that has not ended uses it."""
    try:
        service.delete_clip(db, storage=storage, clip=_clip_or_404(db, clip_id))
    except service.ClipError as exc:
        raise HTTPException(exc.status, detail=exc.detail) from None
