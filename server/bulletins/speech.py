"""The audio of a text-only bulletin: its text through TTS, a clip owned by the sending unit."""

from __future__ import annotations

from sqlalchemy.orm import Session

from server.access.actor import Actor
from server.bulletins.models import Bulletin
from server.clips.models import Clip
from server.clips.service import speak_into_clip
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
    return speak_into_clip(
        db,
        actor=actor,
        settings=settings,
        text=bulletin.text,
        title=bulletin.title,
        org_unit_id=bulletin.org_unit_id,
        details={"bulletin_id": bulletin.id},
    )
