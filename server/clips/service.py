"""Clip ingestion: probe, normalise, content-address, store. Blocking: call from a thread."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from audio import (
    AudioError,
    ChimePart,
    ClipPart,
    EspeakEngine,
    PiperEngine,
    SilencePart,
    TextPart,
    TtsEngine,
    compose,
    normalize,
    probe,
    waveform_peaks,
)
from server.clips import schemas
from server.clips.models import Clip
from server.clips.storage import ClipStorage, sha256_file
from server.settings import ServerSettings

log = logging.getLogger(__name__)


class ClipError(ValueError):
    """A clip request that cannot be carried out; status and a plain-words reason."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class ClipMeta:
    """What the operator said about a clip."""

    title: str
    topic: str | None = None
    language: str = "vi"
    notes: str = ""
    source: str = "upload"
    org_unit_id: int | None = None
    user_id: int | None = None


def check_meta(*, title: str, topic: str | None) -> None:
    """Refuse an empty title or a topic outside the vocabulary."""
    if not title.strip():
        raise ClipError(422, "Give the clip a title.")
    if len(title) > 300:
        raise ClipError(422, "The title is longer than 300 characters.")
    if topic is not None and topic not in schemas.TOPICS:
        raise ClipError(
            422, f"Unknown topic {topic!r}; choose one of: {', '.join(schemas.TOPICS)}."
        )


def by_original(db: Session, original_sha256: str) -> Clip | None:
    """A clip made from exactly these original bytes."""
    return db.scalar(select(Clip).where(Clip.original_sha256 == original_sha256).limit(1))


def ingest_file(
    db: Session,
    *,
    storage: ClipStorage,
    settings: ServerSettings,
    src: Path,
    original_sha256: str,
    filename: str,
    meta: ClipMeta,
) -> tuple[Clip, bool]:
    """Turn an uploaded file into a clip; returns (clip, created). `src` is consumed."""
    out: Path | None = None
    try:
        existing = by_original(db, original_sha256)
        if existing is not None:
            return existing, False
        try:
            info = probe(src, max_duration_s=settings.clip_max_duration_s)
            out = storage.temp_path(".opus")
            result = normalize(
                src=src,
                dst=out,
                target_lufs=settings.clip_target_lufs,
                true_peak_db=settings.clip_true_peak_db,
                bitrate=settings.clip_bitrate,
            )
            sha = sha256_file(out)
            existing = db.scalar(select(Clip).where(Clip.sha256 == sha))
            if existing is not None:
                return existing, False
            peaks = waveform_peaks(out, count=1000)
        except AudioError as exc:
            raise ClipError(422, str(exc)) from None
        ext = Path(filename).suffix.lower()[:16] if filename else ""
        size = out.stat().st_size
        original_size = src.stat().st_size
        storage.adopt(out, storage.dist_path(sha))
        storage.adopt(src, storage.orig_path(original_sha256, ext))
        clip = Clip(
            sha256=sha,
            original_sha256=original_sha256,
            title=meta.title.strip(),
            topic=meta.topic,
            language=meta.language,
            notes=meta.notes,
            source=meta.source,
            original_filename=Path(filename).name[:300] if filename else "",
            original_ext=ext,
            original_format=info.format_name[:100],
            original_codec=info.codec[:100],
            original_duration_s=info.duration_s,
            original_sample_rate=info.sample_rate,
            original_channels=info.channels,
            original_size_bytes=original_size,
            duration_s=result.duration_s,
            size_bytes=size,
            loudness_before_lufs=_finite(result.before.integrated_lufs),
            true_peak_before_dbtp=_finite(result.before.true_peak_dbtp),
            loudness_after_lufs=_finite(result.after.integrated_lufs),
            true_peak_after_dbtp=_finite(result.after.true_peak_dbtp),
            peaks=[list(p) for p in peaks],
            org_unit_id=meta.org_unit_id,
            created_by=meta.user_id,
        )
        db.add(clip)
        db.flush()
        log.info("clip %s %r stored (%.1f s)", clip.id, clip.title, clip.duration_s)
        return clip, True
    finally:
        # Whatever happened, no temp file survives: a partial clip must never be playable.
        src.unlink(missing_ok=True)
        if out is not None:
            out.unlink(missing_ok=True)


def _finite(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return round(float(value), 2)


def tts_engine(settings: ServerSettings) -> TtsEngine:
    """Piper when a voice model is configured, else espeak-ng."""
    if settings.piper_model_path is not None:
        return PiperEngine(settings.piper_model_path)
    return EspeakEngine()


def check_text(settings: ServerSettings, text: str) -> str:
    """Refuse empty or over-long TTS text."""
    text = text.strip()
    if not text:
        raise ClipError(422, "The text to speak is empty.")
    if len(text) > settings.tts_max_chars:
        raise ClipError(
            422, f"The text is {len(text)} characters long; the limit is {settings.tts_max_chars}."
        )
    return text


def make_tts_clip(
    db: Session,
    *,
    storage: ClipStorage,
    settings: ServerSettings,
    req: schemas.TtsRequest,
    meta: ClipMeta,
) -> tuple[Clip, bool]:
    """Speak text into a WAV, then ingest it like an upload."""
    text = check_text(settings, req.text)
    engine = tts_engine(settings)
    wav = storage.temp_path(".wav")
    try:
        engine.synthesize(text=text, voice=req.voice, dst=wav)
    except AudioError as exc:
        wav.unlink(missing_ok=True)
        raise ClipError(422, str(exc)) from None
    return ingest_file(
        db,
        storage=storage,
        settings=settings,
        src=wav,
        original_sha256=sha256_file(wav),
        filename="tts.wav",
        meta=meta,
    )


def make_composed_clip(
    db: Session,
    *,
    storage: ClipStorage,
    settings: ServerSettings,
    req: schemas.ComposeRequest,
    meta: ClipMeta,
) -> tuple[Clip, bool]:
    """Assemble chime, clips, spoken text and pauses into one announcement clip."""
    parts: list[ChimePart | ClipPart | TextPart | SilencePart] = []
    for p in req.parts:
        if isinstance(p, schemas.ChimePart):
            parts.append(ChimePart())
        elif isinstance(p, schemas.ClipPart):
            clip = db.get(Clip, p.clip_id)
            if clip is None:
                raise ClipError(422, f"Clip {p.clip_id} does not exist.")
            parts.append(ClipPart(path=storage.dist_path(clip.sha256)))
        elif isinstance(p, schemas.TextPart):
            parts.append(TextPart(text=check_text(settings, p.text), voice=p.voice))
        else:
            parts.append(SilencePart(ms=p.ms))
    wav = storage.temp_path(".wav")
    try:
        compose(parts=parts, dst=wav, work_dir=storage.tmp_dir, tts=tts_engine(settings))
    except AudioError as exc:
        wav.unlink(missing_ok=True)
        raise ClipError(422, str(exc)) from None
    return ingest_file(
        db,
        storage=storage,
        settings=settings,
        src=wav,
        original_sha256=sha256_file(wav),
        filename="compose.wav",
        meta=meta,
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


def clip_in_use(db: Session, *, clip: Clip) -> str | None:
    """Name of a programme that is not ended and uses the clip, if any."""
    # Imported here: programmes build on clips, so the module-level arrow points the other way.
    from server.programmes.workflow import programme_using_clip

    return programme_using_clip(db, clip_id=clip.id)


def delete_clip(db: Session, *, storage: ClipStorage, clip: Clip) -> None:
    """Delete a clip and its files, unless a live programme uses it."""
    user = clip_in_use(db, clip=clip)
    if user is not None:
        raise ClipError(409, f"The clip is used by the programme {user!r}; end or edit it first.")
    dist = storage.dist_path(clip.sha256)
    orig = storage.orig_path(clip.original_sha256, clip.original_ext)
    db.delete(clip)
    db.flush()
    for path in (dist, orig):
        path.unlink(missing_ok=True)
