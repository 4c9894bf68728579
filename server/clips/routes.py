"""Clip library: upload, TTS, compose, list, fetch audio, delete."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import FileResponse, JSONResponse

from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import CLIPS_READ, CLIPS_WRITE
from server.bounds import IdPath, Offset, page_limit
from server.clips import schemas, service
from server.clips.models import Clip
from server.clips.storage import ClipStorage
from server.clips.upload import receive_upload
from server.deps import SessionDep, SettingsDep
from server.openapi import REASONS, problems

log = logging.getLogger(__name__)
router = APIRouter(tags=["clips"])


def get_storage(settings: SettingsDep) -> ClipStorage:
    """The clip store under LOA_DATA_DIR."""
    return ClipStorage(settings.data_dir / "clips")


StorageDep = Annotated[ClipStorage, Depends(get_storage)]
Reader = Annotated[Actor, allow(CLIPS_READ)]
Writer = Annotated[Actor, allow(CLIPS_WRITE)]
BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
# A clip whose audio the caller's library already holds answers 200 with that clip.
ALREADY_THERE: dict[int | str, dict[str, Any]] = {
    200: {"model": schemas.ClipOut, "description": "the same audio was already in the library"}
}
AUDIO_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "Ogg/Opus audio", "content": {"audio/ogg": BINARY}},
    304: {"description": REASONS[304]},
    **problems(410),
}
ORIGINAL_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "the file as uploaded", "content": {"*/*": BINARY}},
    **problems(410),
}


def _answer(clip: Clip, created: bool) -> JSONResponse:
    """201 for a new clip, 200 for the same audio already in the caller's library."""
    body = schemas.ClipOut.model_validate(clip).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if created else 200)


@router.post(
    "/clips",
    response_model=schemas.ClipOut,
    status_code=status.HTTP_201_CREATED,
    responses=ALREADY_THERE | problems(413, 415),
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "title"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "title": {"type": "string", "minLength": 1, "maxLength": 300},
                            "topic": {"type": "string", "enum": list(schemas.TOPICS)},
                            "language": {"type": "string", "maxLength": 16},
                            "notes": {"type": "string", "maxLength": 2000},
                        },
                    }
                }
            },
            "required": True,
        }
    },
)
async def upload_clip(
    request: Request, db: SessionDep, settings: SettingsDep, storage: StorageDep, actor: Writer
) -> JSONResponse:
    """Upload any audio (or video) file; it is checked, loudness-normalised and stored."""
    tmp = await asyncio.to_thread(storage.temp_path, ".upload")
    received = await receive_upload(request, dest=tmp, max_bytes=settings.clip_max_bytes)
    clip, created = await asyncio.to_thread(
        service.upload, db, actor=actor, storage=storage, settings=settings, received=received
    )
    return _answer(clip, created)


@router.post(
    "/clips/tts",
    response_model=schemas.ClipOut,
    status_code=status.HTTP_201_CREATED,
    responses=ALREADY_THERE,
)
async def tts_clip(
    body: schemas.TtsRequest,
    db: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    actor: Writer,
) -> JSONResponse:
    """Make a clip from Vietnamese text (espeak-ng, or Piper when a model is configured)."""
    clip, created = await asyncio.to_thread(
        service.tts, db, actor=actor, storage=storage, settings=settings, req=body
    )
    return _answer(clip, created)


@router.post(
    "/clips/compose",
    response_model=schemas.ClipOut,
    status_code=status.HTTP_201_CREATED,
    responses=ALREADY_THERE,
)
async def compose_clip(
    body: schemas.ComposeRequest,
    db: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    actor: Writer,
) -> JSONResponse:
    """Build an announcement from a chime, clips, spoken text and pauses."""
    clip, created = await asyncio.to_thread(
        service.compose, db, actor=actor, storage=storage, settings=settings, req=body
    )
    return _answer(clip, created)


@router.get("/clips", response_model=schemas.ClipPage)
def list_clips(
    db: SessionDep,
    actor: Reader,
    q: Annotated[str | None, Query(max_length=100)] = None,
    topic: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, page_limit(500)] = 50,
    offset: Offset = 0,
) -> schemas.ClipPage:
    """Clips, newest first; search by title or notes, filter by topic."""
    rows, total = service.search(db, actor=actor, q=q, topic=topic, limit=limit, offset=offset)
    return schemas.ClipPage(items=[schemas.ClipOut.model_validate(c) for c in rows], total=total)


@router.get("/clips/{clip_id:int}", response_model=schemas.ClipDetail)
def get_clip(db: SessionDep, actor: Reader, clip_id: IdPath) -> Clip:
    """A clip's metadata and waveform peaks."""
    return service.get(db, actor=actor, clip_id=clip_id)


@router.get(
    "/clips/{clip_id:int}/audio",
    response_class=FileResponse,
    responses=AUDIO_ANSWERS,
)
def clip_audio(
    db: SessionDep,
    storage: StorageDep,
    actor: Reader,
    clip_id: IdPath,
    if_none_match: Annotated[str | None, Header(max_length=2000)] = None,
) -> Response:
    """The normalised Ogg/Opus file (HTTP Range supported; the ETag is its sha256)."""
    clip = service.get(db, actor=actor, clip_id=clip_id)
    etag = f'"{clip.sha256}"'
    if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers={"ETag": etag})
    return FileResponse(
        service.audio_path(storage=storage, clip=clip),
        media_type="audio/ogg",
        filename=f"clip-{clip.id}.opus",
        headers={"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"},
    )


@router.get(
    "/clips/{clip_id:int}/original",
    response_class=FileResponse,
    responses=ORIGINAL_ANSWERS,
)
def clip_original(db: SessionDep, storage: StorageDep, actor: Reader, clip_id: IdPath) -> Response:
    """The file exactly as it was uploaded."""
    clip = service.get(db, actor=actor, clip_id=clip_id)
    return FileResponse(
        service.original_path(storage=storage, clip=clip),
        filename=clip.original_filename or f"clip-{clip.id}{clip.original_ext}",
        headers={"ETag": f'"{clip.original_sha256}"'},
    )


@router.delete("/clips/{clip_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_clip(db: SessionDep, storage: StorageDep, actor: Writer, clip_id: IdPath) -> None:
    """Delete a clip unless a programme that has not ended uses it."""
    service.delete(db, actor=actor, storage=storage, clip_id=clip_id)
