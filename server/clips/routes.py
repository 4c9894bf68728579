"""Clip library: upload, TTS, compose, list, fetch audio, delete."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.access.actor import Actor
from server.access.deps import allow
from server.access.policy import CLIPS_READ, CLIPS_WRITE
from server.access.reach import check_clip_ids, readable_clip, writable_clip
from server.audit import service as audit
from server.bounds import IdPath, Offset, page_limit
from server.clips import schemas, service
from server.clips.models import Clip
from server.clips.storage import ClipStorage
from server.clips.upload import UploadError, receive_upload
from server.deps import SessionDep, SettingsDep
from server.openapi import REASONS, problems
from server.settings import ServerSettings

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


def _answer(db: Session, actor: Actor, clip: Clip, created: bool) -> JSONResponse:
    """201 for a new clip (audited), 200 for the same audio already in the caller's library."""
    if not created and not actor.reads_clip_of(clip.org_unit_id):
        raise HTTPException(
            409,
            detail="This audio is already in the library of another org unit; ask an "
            "administrator of a unit above both to share it.",
        )
    if created:
        audit.record(
            db,
            actor=actor,
            action="clip.create",
            object_type="clip",
            object_id=clip.id,
            org_unit_id=clip.org_unit_id,
            summary=clip.title,
            details={"source": clip.source, "sha256": clip.sha256},
        )
        db.commit()
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


def _meta(settings: ServerSettings, actor: Actor, **fields: str | None) -> service.ClipMeta:
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
        org_unit_id=actor.user.org_unit_id,
        user_id=actor.user.id,
    )


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
    try:
        received = await receive_upload(request, dest=tmp, max_bytes=settings.clip_max_bytes)
    except UploadError as exc:
        raise HTTPException(exc.status, detail=exc.detail) from None
    try:
        meta = _meta(settings, actor, **received.fields)
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
    return _answer(db, actor, clip, created)


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
    title = body.title or body.text.strip()[:80] or "TTS"
    # The text is kept (notes): an approver reads what the voice says next to the player.
    meta = _meta(settings, actor, title=title, topic=body.topic, source="tts", notes=body.text)
    clip, created = await _run(
        db, service.make_tts_clip, storage=storage, settings=settings, req=body, meta=meta
    )
    return _answer(db, actor, clip, created)


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
    meta = _meta(settings, actor, title=body.title, topic=body.topic, source="compose")
    check_clip_ids(db, actor, [p.clip_id for p in body.parts if isinstance(p, schemas.ClipPart)])
    clip, created = await _run(
        db, service.make_composed_clip, storage=storage, settings=settings, req=body, meta=meta
    )
    return _answer(db, actor, clip, created)


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
    rows, total = service.list_clips(
        db,
        q=q,
        topic=topic,
        limit=limit,
        offset=offset,
        visible=actor.clip_clause(Clip.org_unit_id),
    )
    return schemas.ClipPage(items=[schemas.ClipOut.model_validate(c) for c in rows], total=total)


@router.get("/clips/{clip_id:int}", response_model=schemas.ClipDetail)
def get_clip(db: SessionDep, actor: Reader, clip_id: IdPath) -> Clip:
    """A clip's metadata and waveform peaks."""
    return readable_clip(db, actor, clip_id)


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
    clip = readable_clip(db, actor, clip_id)
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


@router.get(
    "/clips/{clip_id:int}/original",
    response_class=FileResponse,
    responses=ORIGINAL_ANSWERS,
)
def clip_original(db: SessionDep, storage: StorageDep, actor: Reader, clip_id: IdPath) -> Response:
    """The file exactly as it was uploaded."""
    clip = readable_clip(db, actor, clip_id)
    path = storage.orig_path(clip.original_sha256, clip.original_ext)
    if not path.exists():
        raise HTTPException(410, detail="The original file is missing from the store.")
    return FileResponse(
        path,
        filename=clip.original_filename or f"clip-{clip.id}{clip.original_ext}",
        headers={"ETag": f'"{clip.original_sha256}"'},
    )


@router.delete("/clips/{clip_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_clip(db: SessionDep, storage: StorageDep, actor: Writer, clip_id: IdPath) -> None:
    """Delete a clip unless a programme that has not ended uses it."""
    clip = writable_clip(db, actor, clip_id)
    audit.record(
        db,
        actor=actor,
        action="clip.delete",
        object_type="clip",
        object_id=clip.id,
        org_unit_id=clip.org_unit_id,
        summary=clip.title,
    )
    try:
        service.delete_clip(db, storage=storage, clip=clip)
    except service.ClipError as exc:
        raise HTTPException(exc.status, detail=exc.detail) from None
