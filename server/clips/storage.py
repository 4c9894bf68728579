"""Where clip files live: content-addressed, written by rename so no partial file is visible."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

CHUNK = 1024 * 1024


class ClipStorage:
    """Distribution files, originals and upload temp files under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        self.dist_dir = root / "dist"
        self.orig_dir = root / "orig"

    def ensure(self) -> None:
        """Create the directories."""
        for d in (self.tmp_dir, self.dist_dir, self.orig_dir):
            d.mkdir(parents=True, exist_ok=True)

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh temp file path on the same filesystem as the store (for atomic renames)."""
        self.ensure()
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, suffix=suffix)
        os.close(fd)
        return Path(name)

    def dist_path(self, sha256: str) -> Path:
        """The normalised Ogg/Opus file of a clip."""
        return self.dist_dir / sha256[:2] / f"{sha256}.opus"

    def orig_path(self, sha256: str, ext: str) -> Path:
        """The original upload, as the operator sent it."""
        return self.orig_dir / sha256[:2] / f"{sha256}{ext}"

    def adopt(self, tmp: Path, dest: Path) -> None:
        """Move a finished temp file into place (atomic; an existing copy is kept)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            tmp.unlink(missing_ok=True)
        else:
            os.replace(tmp, dest)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
