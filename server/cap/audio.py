"""A CAP alert's audio <resource>: fetched before anything is written, then made a clip."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from server.access.actor import Actor
from server.cap import resource
from server.cap.alert import CapInfo, CapResource
from server.clips.ingest import ClipMeta, ingest_file
from server.clips.models import Clip
from server.clips.service import audit_new_clip
from server.clips.storage import ClipStorage
from server.live.urlguard import AllowList, Resolver
from server.settings import ServerSettings


@dataclass(frozen=True)
class Fetched:
    """The alert's audio in a temp file (consumed by clip_of; else the caller removes it)."""

    resource: CapResource
    path: Path
    sha256: str


def fetch_audio(info: CapInfo, *, settings: ServerSettings, resolve: Resolver) -> Fetched | None:
    """The info's audio resource in a temp file (blocking: DNS, HTTP); None without one."""
    found = resource.audio_resource(info.resources)
    if found is None:
        return None
    dest = ClipStorage(settings.data_dir / "clips").temp_path(".cap")
    try:
        sha = resource.fetch(
            found,
            allow=AllowList.parse(settings.cap_resource_allowed_hosts),
            dest=dest,
            max_bytes=settings.clip_max_bytes,
            resolve=resolve,
        )
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return Fetched(found, dest, sha)


def clip_of(
    db: Session, *, actor: Actor, info: CapInfo, settings: ServerSettings, fetched: Fetched
) -> Clip:
    """The fetched audio as a clip of the caller's unit (blocking: ffmpeg), audited when new."""
    meta = ClipMeta(
        title=(info.headline or info.event)[:300],
        language=info.language[:16],
        notes=(fetched.resource.description or "")[:2000],
        source="cap",
        org_unit_id=actor.user.org_unit_id,
        user_id=actor.user.id,
    )
    uri = fetched.resource.uri or ""
    clip, created = ingest_file(
        db,
        storage=ClipStorage(settings.data_dir / "clips"),
        settings=settings,
        src=fetched.path,
        original_sha256=fetched.sha256,
        filename=uri.rsplit("/", 1)[-1][:100],
        meta=meta,
    )
    if created:
        audit_new_clip(
            db, actor=actor, clip=clip, details={"sha256": clip.sha256, "uri": uri[:500]}
        )
    return clip
