"""Clip ingestion: probe, normalise, content-address, store. Blocking: call from a thread."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
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
from server.domain import DomainError
from server.settings import ServerSettings

log = logging.getLogger(__name__)


class ClipError(DomainError):
    """A clip request that cannot be carried out; status and a plain-words reason."""


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
    """Turn a file into a clip row (not committed); returns (clip, created). `src` is consumed.

    Order, so the request's one commit suffices: normalise into a temp file, insert the row
    (a duplicate fails here, before the store is touched), then rename the finished files to
    their content addresses. A committed row therefore always has its files; a commit that
    fails afterwards leaves at most complete, unreferenced files, never a partial one.
    """
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
            original_size_bytes=src.stat().st_size,
            duration_s=result.duration_s,
            size_bytes=out.stat().st_size,
            loudness_before_lufs=_finite(result.before.integrated_lufs),
            true_peak_before_dbtp=_finite(result.before.true_peak_dbtp),
            loudness_after_lufs=_finite(result.after.integrated_lufs),
            true_peak_after_dbtp=_finite(result.after.true_peak_dbtp),
            peaks=[list(p) for p in peaks],
            org_unit_id=meta.org_unit_id,
            created_by=meta.user_id,
        )
        _insert(db, clip)
        storage.adopt(out, storage.dist_path(sha))
        storage.adopt(src, storage.orig_path(original_sha256, ext))
        log.info("clip %s %r stored (%.1f s)", clip.id, clip.title, clip.duration_s)
        return clip, True
    finally:
        # Whatever happened, no temp file survives: a partial clip must never be playable.
        src.unlink(missing_ok=True)
        if out is not None:
            out.unlink(missing_ok=True)


def _insert(db: Session, clip: Clip) -> None:
    """Add the row now, so a duplicate is refused before its files are moved into place."""
    db.add(clip)
    try:
        db.flush()
    except IntegrityError:
        # Another request stored the same distribution file first (the check above raced it);
        # the request's session rolls back on this error.
        raise ClipError(409, "This audio was just uploaded by someone else.") from None


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


def speak(*, storage: ClipStorage, settings: ServerSettings, req: schemas.TtsRequest) -> Path:
    """Speak the text into a temp WAV (the caller ingests and so consumes it)."""
    text = check_text(settings, req.text)
    engine = tts_engine(settings)
    wav = storage.temp_path(".wav")
    try:
        engine.synthesize(text=text, voice=req.voice, dst=wav)
    except AudioError as exc:
        wav.unlink(missing_ok=True)
        raise ClipError(422, str(exc)) from None
    return wav


def assemble(
    db: Session, *, storage: ClipStorage, settings: ServerSettings, req: schemas.ComposeRequest
) -> Path:
    """Chime, clips, spoken text and pauses into a temp WAV (the caller ingests it)."""
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
    return wav
