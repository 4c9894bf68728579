"""The audio of a text-only bulletin: its text through TTS, a clip owned by the sending unit."""

from __future__ import annotations

from sqlalchemy.orm import Session

from server.access.actor import Actor
from server.audit import service as audit
from server.bulletins.models import Bulletin
from server.clips.ingest import ClipMeta, ingest_file, speak
from server.clips.models import Clip
from server.clips.schemas import TtsRequest
from server.clips.storage import ClipStorage, sha256_file
from server.domain import DomainError
from server.settings import ServerSettings


def tts_clip(
    db: Session, *, actor: Actor, bulletin: Bulletin, settings: ServerSettings | None
) -> Clip:
    """Speak the bulletin's text into a clip (blocking: ffmpeg and the TTS engine)."""
    if settings is None:
        # A caller that cannot reach the clip store must send audio; never a silent bulletin.
        raise DomainError(
            503, "Text-to-speech is not available here; send the bulletin with audio (clip_ids)."
        )
    storage = ClipStorage(settings.data_dir / "clips")
    wav = speak(storage=storage, settings=settings, req=TtsRequest(text=bulletin.text))
    meta = ClipMeta(
        title=bulletin.title,
        notes=bulletin.text[:2000],
        source="tts",
        org_unit_id=bulletin.org_unit_id,
        user_id=actor.user.id,
    )
    clip, created = ingest_file(
        db,
        storage=storage,
        settings=settings,
        src=wav,
        original_sha256=sha256_file(wav),
        filename="tts.wav",
        meta=meta,
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
            details={"source": "tts", "bulletin_id": bulletin.id},
        )
    return clip
