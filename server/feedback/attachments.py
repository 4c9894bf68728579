"""A citizen's photo or voice note: type checked by its bytes, cleaned, stored by sha256.

Photos are decoded and re-encoded (so EXIF, GPS and any trailing bytes are gone); voice
notes are probed with ffprobe and transcoded to Ogg/Opus by the clip pipeline. What is
kept is written to a temporary file and renamed, so a half-written file never exists.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from audio.errors import AudioError
from audio.normalize import normalize
from audio.probe import probe
from server.domain import DomainError

MAX_PIXELS = 40_000_000  # a "decompression bomb" is refused before it is decoded
MAX_SIDE = 2560  # photos are scaled down to this (a phone photo stays readable)
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
VOICE_TYPE = "audio/ogg"
REFUSED = (
    "The attachment must be a photo (JPEG, PNG or WebP) or a voice note (Ogg, Opus, MP3, "
    "M4A, AAC, AMR, WAV or WebM). / Tệp đính kèm phải là ảnh hoặc ghi âm."
)


@dataclass(frozen=True)
class Stored:
    """What a case records about its kept attachment."""

    sha256: str
    media_type: str
    size: int


def sniff(data: bytes) -> str | None:
    """'image' or 'audio' by the file's first bytes (never its name or declared type)."""
    head = data[:16]
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio"
    if head.startswith((b"OggS", b"ID3", b"#!AMR", b"\x1a\x45\xdf\xa3", b"fLaC")):
        return "audio"
    if head[4:8] == b"ftyp":  # MP4 family: M4A voice memos (a video is refused by the probe)
        return "audio"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG/ADTS frame sync
        return "audio"
    return None


def store(data: bytes, *, root: Path, max_voice_s: float) -> Stored:
    """Check, clean and keep an attachment under `root`; 415/422 in plain words if unusable."""
    kind = sniff(data)
    if kind is None:
        raise DomainError(415, REFUSED)
    root.mkdir(parents=True, exist_ok=True)
    if kind == "image":
        cleaned, media_type = _clean_image(data)
        return _keep(cleaned, media_type, root)
    return _keep_voice(data, root, max_voice_s)


def path_of(root: Path, sha256: str) -> Path:
    """Where an attachment with this digest lives."""
    return root / sha256[:2] / sha256


def _clean_image(data: bytes) -> tuple[bytes, str]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            if fmt not in IMAGE_TYPES:
                raise DomainError(415, REFUSED)
            if img.width * img.height > MAX_PIXELS:
                raise DomainError(422, "The photo is too large (too many pixels).")
            img.load()
            # Turn it the way the camera meant, then drop the EXIF that said so.
            upright = ImageOps.exif_transpose(img)
            upright.thumbnail((MAX_SIDE, MAX_SIDE))
            mode = "RGB" if fmt == "JPEG" else ("RGBA" if "A" in upright.getbands() else "RGB")
            clean = upright.convert(mode)
            # A fresh image: no info dict, so no EXIF, XMP, ICC or text chunks are written.
            out = io.BytesIO()
            fresh = Image.frombytes(mode, clean.size, clean.tobytes())
            fresh.save(out, format=fmt, **({"quality": 85} if fmt != "PNG" else {}))
    except DomainError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise DomainError(422, "The photo could not be read: it may be damaged.") from None
    return out.getvalue(), IMAGE_TYPES[fmt]


def _keep_voice(data: bytes, root: Path, max_voice_s: float) -> Stored:
    work = root / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        src = Path(tmp) / "in"
        src.write_bytes(data)
        dst = Path(tmp) / "out.ogg"
        try:
            info = probe(src, max_duration_s=max_voice_s)
            if info.has_video:
                raise DomainError(415, REFUSED)
            normalize(src=src, dst=dst, bitrate=24000)
        except AudioError as exc:
            raise DomainError(422, f"The voice note could not be used: {exc.message}") from None
        return _keep(dst.read_bytes(), VOICE_TYPE, root)


def _keep(data: bytes, media_type: str, root: Path) -> Stored:
    sha = hashlib.sha256(data).hexdigest()
    final = path_of(root, sha)
    if not final.exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        part = final.parent / f".{sha}.{secrets.token_hex(6)}.part"
        try:
            with open(part, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(part, final)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    return Stored(sha256=sha, media_type=media_type, size=len(data))
