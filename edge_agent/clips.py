"""The clip cache: verified `<sha256>.opus` files, temp files being reassembled, eviction.

A clip file only ever appears under its final name by `os.replace` after its sha256 was
checked, so whatever name the player asks for is complete and correct; anything else in
the directory is a temp file (`<sha256>.part`) or a leftover to remove. Methods block
(hashing, fsync); async callers use asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from edge_agent.localdb import LocalDb
from protocol.clipchunk import CHUNK_SIZE

log = logging.getLogger(__name__)

CLIP_SUFFIX = ".opus"
PART_SUFFIX = ".part"
_SHA_NAME = re.compile(r"^[0-9a-f]{64}$")
MIB = 1024 * 1024


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's content, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ClipCache:
    """Verified clips on disk and their index in the local database."""

    def __init__(
        self,
        *,
        clip_dir: Path,
        db: LocalDb,
        quota_bytes: int,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.clip_dir = clip_dir
        self.db = db
        self.quota_bytes = quota_bytes
        self._wall = wall
        self._sizes: dict[str, int] = {}  # verified clips: sha -> size
        self._pinned: frozenset[str] = frozenset()
        self._expected: frozenset[str] = frozenset()  # the fetcher is getting these
        self.evicted = 0
        # Called (from any thread) with a clip forget() deleted: the fetcher wakes to get it.
        self.on_forget: Callable[[str], None] | None = None

    # -- queries (no I/O: safe on the event loop) --------------------------------------------

    def ready(self, sha256: str) -> bool:
        """True if the verified clip is on disk and may be played."""
        return sha256 in self._sizes

    def arriving(self, sha256: str) -> bool:
        """True if the clip is not ready yet but is being fetched (the schedule needs it)."""
        return sha256 in self._expected and sha256 not in self._sizes

    def expect(self, shas: Iterable[str]) -> None:
        """The clips the fetcher keeps asking for until they are verified (see arriving())."""
        self._expected = frozenset(shas)

    def path(self, sha256: str) -> Path:
        """Where a verified clip lives (check ready() first)."""
        return self.clip_dir / f"{sha256}{CLIP_SUFFIX}"

    def part_path(self, sha256: str) -> Path:
        """The temp file a clip is reassembled in."""
        return self.clip_dir / f"{sha256}{PART_SUFFIX}"

    @property
    def used_bytes(self) -> int:
        """Bytes held by verified clips."""
        return sum(self._sizes.values())

    def shas(self) -> frozenset[str]:
        """Every verified clip."""
        return frozenset(self._sizes)

    # -- blocking operations ----------------------------------------------------------------

    def load(self, *, downloads: Iterable[str]) -> None:
        """Reconcile the directory with the index after a start (or a crash)."""
        self.clip_dir.mkdir(parents=True, exist_ok=True)
        indexed = {row.sha256: row for row in self.db.clips()}
        keep_parts = set(downloads)
        on_disk: set[str] = set()
        for entry in self.clip_dir.iterdir():
            name, suffix = entry.stem, entry.suffix
            if suffix == CLIP_SUFFIX and _SHA_NAME.match(name):
                on_disk.add(name)
            elif suffix == PART_SUFFIX and _SHA_NAME.match(name) and name in keep_parts:
                continue  # a download to resume
            else:
                log.info("clip cache: removing leftover %s", entry.name)
                with contextlib.suppress(OSError):
                    entry.unlink()
        gone = set(indexed) - on_disk
        if gone:
            log.warning("clip cache: %d indexed clip(s) have no file; fetching again", len(gone))
            self.db.remove_clips(gone)
        for sha in on_disk - set(indexed):
            # Renamed into place but the crash came before the index row: check it again.
            path = self.path(sha)
            if sha256_of(path) == sha:
                self.db.add_clip(
                    sha256=sha, size=path.stat().st_size, now=self._wall(), pinned=False
                )
            else:
                log.warning("clip cache: %s does not match its name; deleted", path.name)
                path.unlink()
        self._sizes = {row.sha256: row.size for row in self.db.clips()}

    def adopt(self, sha256: str) -> bool:
        """Verify a complete temp file and rename it into place; False (and deleted) if wrong."""
        part = self.part_path(sha256)
        try:
            with part.open("rb+") as f:
                os.fsync(f.fileno())
        except FileNotFoundError:
            log.warning("clip %s: the temp file vanished; fetching it again", sha256[:12])
            self.db.drop_download(sha256)
            return False
        actual = sha256_of(part)
        if actual != sha256:
            log.warning(
                "clip %s: the reassembled file's sha256 is %s; discarded, fetching it again",
                sha256[:12],
                actual[:12],
            )
            part.unlink()
            self.db.drop_download(sha256)
            return False
        size = part.stat().st_size
        os.replace(part, self.path(sha256))
        _fsync_dir(self.clip_dir)
        self.db.add_clip(sha256=sha256, size=size, now=self._wall(), pinned=sha256 in self._pinned)
        self._sizes[sha256] = size
        self.evict()
        return True

    def write_chunk(self, sha256: str, *, index: int, data: bytes, fresh: bool) -> None:
        """Write one chunk at its offset in the temp file, then record it (in that order)."""
        part = self.part_path(sha256)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if fresh else 0)
        fd = os.open(part, flags, 0o644)
        try:
            os.pwrite(fd, data, index * CHUNK_SIZE)
        finally:
            os.close(fd)
        self.db.add_chunk(sha256=sha256, index=index)

    def discard_part(self, sha256: str) -> None:
        """Delete a temp file and its download record."""
        with contextlib.suppress(FileNotFoundError):
            self.part_path(sha256).unlink()
        self.db.drop_download(sha256)

    def pin(self, shas: Iterable[str]) -> None:
        """Pin the current schedule's clips (never evicted), then evict if over quota."""
        self._pinned = frozenset(shas)
        self.db.set_pinned(self._pinned)
        self.evict()

    def touch(self, sha256: str) -> None:
        """Record a use of the clip (for least-recently-used eviction)."""
        self.db.touch_clip(sha256, now=self._wall())

    def forget(self, sha256: str) -> None:
        """Delete a verified clip found damaged on disk; the fetcher then asks for it again."""
        with contextlib.suppress(FileNotFoundError):
            self.path(sha256).unlink()
        self._sizes.pop(sha256, None)
        self.db.remove_clips([sha256])
        log.warning("clip cache: %s no longer matches its sha256; deleted", sha256[:12])
        if self.on_forget is not None:
            self.on_forget(sha256)

    def evict(self) -> list[str]:
        """Delete unpinned clips, least recently used first, until the cache fits its quota."""
        total = self.used_bytes
        if total <= self.quota_bytes:
            return []
        evicted: list[str] = []
        candidates = sorted(
            (row for row in self.db.clips() if row.sha256 not in self._pinned),
            key=lambda row: row.last_used,
        )
        for row in candidates:
            if total <= self.quota_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                self.path(row.sha256).unlink()
            self._sizes.pop(row.sha256, None)
            total -= row.size
            evicted.append(row.sha256)
        if evicted:
            self.db.remove_clips(evicted)
            self.evicted += len(evicted)
            log.info("clip cache: evicted %d clip(s) to stay under the quota", len(evicted))
        if total > self.quota_bytes:
            log.warning(
                "clip cache: the current schedule's clips need %.1f MB, more than the quota of "
                "%.1f MB (setting clip_quota_mb); keeping them all",
                total / MIB,
                self.quota_bytes / MIB,
            )
        return evicted
