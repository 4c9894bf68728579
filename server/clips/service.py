"""Clip use cases: each checks reach, does the work, audits; the request's session commits.

The ingest use cases block (ffmpeg, TTS): routes call them from a thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from server.access import reach
from server.access.actor import Actor
from server.audit import service as audit
from server.clips import schemas
from server.clips.ingest import ClipError, ClipMeta, assemble, check_meta, ingest_file, speak
from server.clips.models import Clip
from server.clips.storage import ClipStorage, sha256_file
from server.clips.upload import ReceivedUpload
from server.settings import ServerSettings

__all__ = ["ClipError", "ClipMeta", "list_clips"]  # list_clips: the console's query helper


def _meta(actor: Actor, fields: Mapping[str, str | None]) -> ClipMeta:
    """The operator's words about a clip, checked; owned by the caller's org unit."""
    title = fields.get("title") or ""
    topic = fields.get("topic") or None
    check_meta(title=title, topic=topic)
    return ClipMeta(
        title=title,
        topic=topic,
        language=(fields.get("language") or "vi")[:16],
        notes=(fields.get("notes") or "")[:2000],
        source=fields.get("source") or "upload",
        org_unit_id=actor.user.org_unit_id,
        user_id=actor.user.id,
    )


def _stored(db: Session, actor: Actor, clip: Clip, created: bool) -> tuple[Clip, bool]:
    """Audit a new clip; refuse audio that already sits in a library the caller cannot read."""
    if not created and not actor.reads_clip_of(clip.org_unit_id):
        raise ClipError(
            409,
            "This audio is already in the library of another org unit; ask an "
            "administrator of a unit above both to share it.",
        )
    if created:
        audit_new_clip(db, actor=actor, clip=clip, details={"sha256": clip.sha256})
    return clip, created


def upload(
    db: Session,
    *,
    actor: Actor,
    storage: ClipStorage,
    settings: ServerSettings,
    received: ReceivedUpload,
) -> tuple[Clip, bool]:
    """Check, normalise and store an uploaded file (consumed); (clip, created)."""
    src = received.file_path
    try:
        meta = _meta(actor, received.fields)
        if received.size == 0:
            raise ClipError(422, "The file is empty.")
        clip, created = ingest_file(
            db,
            storage=storage,
            settings=settings,
            src=src,
            original_sha256=received.sha256,
            filename=received.filename,
            meta=meta,
        )
    finally:
        src.unlink(missing_ok=True)  # also when refused before ingest_file consumed it
    return _stored(db, actor, clip, created)


def tts(
    db: Session,
    *,
    actor: Actor,
    storage: ClipStorage,
    settings: ServerSettings,
    req: schemas.TtsRequest,
) -> tuple[Clip, bool]:
    """Make a clip from text (espeak-ng, or Piper when a model is configured)."""
    title = req.title or req.text.strip()[:80] or "TTS"
    # The text is kept (notes): an approver reads what the voice says next to the player.
    fields = {"title": title, "topic": req.topic, "source": "tts", "notes": req.text}
    meta = _meta(actor, fields)
    wav = speak(storage=storage, settings=settings, req=req)
    return _stored(db, actor, *_ingest_wav(db, storage, settings, wav, "tts.wav", meta))


def speak_into_clip(
    db: Session,
    *,
    actor: Actor,
    settings: ServerSettings,
    text: str,
    title: str,
    org_unit_id: int | None,
    details: Mapping[str, object],
    voice: str = "vi",
) -> Clip:
    """Text read by TTS into a clip of `org_unit_id`, audited when new (bulletins, CAP, items)."""
    storage = ClipStorage(settings.data_dir / "clips")
    req = schemas.TtsRequest(text=text, voice=voice)
    wav = speak(storage=storage, settings=settings, req=req)
    meta = ClipMeta(
        title=title, notes=text[:2000], source="tts", org_unit_id=org_unit_id, user_id=actor.user.id
    )
    clip, created = _ingest_wav(db, storage, settings, wav, "tts.wav", meta)
    if created:
        audit_new_clip(db, actor=actor, clip=clip, details=details)
    return clip


def compose(
    db: Session,
    *,
    actor: Actor,
    storage: ClipStorage,
    settings: ServerSettings,
    req: schemas.ComposeRequest,
) -> tuple[Clip, bool]:
    """Build an announcement from a chime, clips the caller may use, text and pauses."""
    meta = _meta(actor, {"title": req.title, "topic": req.topic, "source": "compose"})
    reach.check_ids(
        db, actor, Clip, [p.clip_id for p in req.parts if isinstance(p, schemas.ClipPart)]
    )
    wav = assemble(db, storage=storage, settings=settings, req=req)
    return _stored(db, actor, *_ingest_wav(db, storage, settings, wav, "compose.wav", meta))


def _ingest_wav(
    db: Session,
    storage: ClipStorage,
    settings: ServerSettings,
    wav: Path,
    filename: str,
    meta: ClipMeta,
) -> tuple[Clip, bool]:
    return ingest_file(
        db,
        storage=storage,
        settings=settings,
        src=wav,
        original_sha256=sha256_file(wav),
        filename=filename,
        meta=meta,
    )


def search(
    db: Session, *, actor: Actor, q: str | None, topic: str | None, limit: int, offset: int
) -> tuple[list[Clip], int]:
    """The clips the caller may use, newest first, searched by title or notes and topic."""
    return list_clips(
        db, q=q, topic=topic, limit=limit, offset=offset, visible=reach.reachable(actor, Clip)
    )


def list_clips(
    db: Session,
    *,
    q: str | None,
    topic: str | None,
    limit: int,
    offset: int,
    visible: ColumnElement[bool] | None = None,
) -> tuple[list[Clip], int]:
    """Clips, newest first, searched by title/topic, limited to `visible` ones."""
    query = select(Clip)
    if visible is not None:
        query = query.where(visible)
    if q:
        query = query.where(or_(Clip.title.ilike(f"%{q}%"), Clip.notes.ilike(f"%{q}%")))
    if topic:
        query = query.where(Clip.topic == topic)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(
        query.order_by(Clip.created_at.desc(), Clip.id.desc()).limit(limit).offset(offset)
    )
    return list(rows), total


def get(db: Session, *, actor: Actor, clip_id: int) -> Clip:
    """A clip the caller may play or use (own subtree, or shared down from above)."""
    return reach.load(db, actor, Clip, clip_id)


def audio_path(*, storage: ClipStorage, clip: Clip) -> Path:
    """The clip's normalised file; 410 when the store lost it."""
    path = storage.dist_path(clip.sha256)
    if not path.exists():
        raise ClipError(410, "The clip's audio file is missing from the store.")
    return path


def original_path(*, storage: ClipStorage, clip: Clip) -> Path:
    """The file as uploaded; 410 when the store lost it."""
    path = storage.orig_path(clip.original_sha256, clip.original_ext)
    if not path.exists():
        raise ClipError(410, "The original file is missing from the store.")
    return path


def clip_in_use(db: Session, *, clip: Clip) -> list[str]:
    """Titles of programmes not finished that play the clip or keep it as a relay fallback."""
    # Imported here: programmes build on clips, so the module-level arrow points the other way.
    from server.programmes.items import programmes_using_clip

    return programmes_using_clip(db, clip_id=clip.id)


def delete(db: Session, *, actor: Actor, storage: ClipStorage, clip_id: int) -> None:
    """Delete a clip of the caller's subtree and its files, unless a live programme uses it."""
    clip = reach.writable_clip(db, actor, clip_id)
    users = clip_in_use(db, clip=clip)
    if users:
        noun = "programme" if len(users) == 1 else "programmes"
        named = ", ".join(repr(title) for title in users[:5])
        more = f" and {len(users) - 5} more" if len(users) > 5 else ""
        raise ClipError(409, f"The clip is used by the {noun} {named}{more}; end or edit it first.")
    audit.record(
        db,
        actor=actor,
        action="clip.delete",
        object_type="clip",
        object_id=clip.id,
        org_unit_id=clip.org_unit_id,
        summary=clip.title,
    )
    dist = storage.dist_path(clip.sha256)
    orig = storage.orig_path(clip.original_sha256, clip.original_ext)
    db.delete(clip)
    db.flush()
    # Removed before the commit, as always: removed after it, they could vanish under a
    # re-upload of the same audio that committed in between and kept the existing copy.
    for path in (dist, orig):
        path.unlink(missing_ok=True)


def audit_new_clip(db: Session, *, actor: Actor, clip: Clip, details: Mapping[str, object]) -> None:
    """The audit row of a clip that entered the library (upload, TTS, a CAP resource)."""
    audit.record(
        db,
        actor=actor,
        action="clip.create",
        object_type="clip",
        object_id=clip.id,
        org_unit_id=clip.org_unit_id,
        summary=clip.title,
        details={"source": clip.source, **details},
    )
