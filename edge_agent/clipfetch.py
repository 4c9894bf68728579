"""Reassembles clips from MQTT chunks and asks the server for whatever is missing.

Chunks arrive on a zone's clip topic (published once for every device of the zone) or on
the device's own clip topic (the answer to a ClipRequest). A clip the schedule needs and
does not have is first given a jittered hold-off, so a zone publication in progress can
finish; after that, and whenever chunks stop arriving for a hold-off, the fetcher asks for
exactly the missing chunk indexes (all of them when it holds none), backing off between
requests.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from audio.clock import Clock
from edge_agent.clips import ClipCache
from edge_agent.localdb import LocalDb
from protocol import ClipRequest
from protocol.clipchunk import CHUNK_SIZE, Chunk, ChunkError, decode_chunk

log = logging.getLogger(__name__)

QUEUE_LIMIT = 512  # chunks waiting to be written (64 KiB each)
MAX_REQUEST_CHUNKS = 4096  # the ClipRequest limit
TICK_S = 0.25


@dataclass
class Download:
    """What is known of one missing clip."""

    sha256: str
    count: int | None = None
    received: set[int] = field(default_factory=set)
    last_chunk: float | None = None  # monotonic
    next_request: float = 0.0  # monotonic
    backoff_s: float = 0.0
    requests: int = 0

    def missing(self) -> list[int] | None:
        """Chunk indexes still needed, or None for "all of them"."""
        if self.count is None or not self.received:
            return None
        return sorted(set(range(self.count)) - self.received)[:MAX_REQUEST_CHUNKS]


@dataclass
class FetchStats:
    """Counters for logs and tests."""

    chunks_written: int = 0
    chunks_duplicate: int = 0
    chunks_corrupt: int = 0
    chunks_dropped: int = 0
    requests_sent: int = 0
    clips_verified: int = 0
    sha_mismatches: int = 0


class ClipFetcher:
    """Feeds chunks into the cache and requests what the schedule still needs."""

    def __init__(
        self,
        *,
        cache: ClipCache,
        db: LocalDb,
        clock: Clock,
        send_request: Callable[[ClipRequest], bool],
        holdoff_s: float,
        retry_max_s: float,
        on_clip_ready: Callable[[str], None] | None = None,
    ) -> None:
        self.cache = cache
        self.db = db
        self.clock = clock
        self._send_request = send_request
        self.holdoff_s = holdoff_s
        self.retry_max_s = max(retry_max_s, holdoff_s)
        self._on_clip_ready = on_clip_ready
        self.stats = FetchStats()
        self._wanted: set[str] = set()
        self._downloads: dict[str, Download] = {}
        self._queue: asyncio.Queue[tuple[str | None, bytes]] = asyncio.Queue(QUEUE_LIMIT)
        self._wake = asyncio.Event()

    # -- inputs (event loop, never raise) ---------------------------------------------------

    def offer(self, topic_sha: str | None, payload: bytes) -> None:
        """A chunk payload from a zone topic (its sha) or the device's clip topic (None)."""
        try:
            self._queue.put_nowait((topic_sha, payload))
        except asyncio.QueueFull:
            self.stats.chunks_dropped += 1  # recovered by the next request for missing chunks

    def want(self, shas: Iterable[str]) -> None:
        """The clips the current schedule needs; missing ones get a hold-off, then requests."""
        self._wanted = set(shas)
        # Until it is verified, a wanted clip is asked for again and again (never given up):
        # the player may wait for it instead of failing an urgent item.
        self.cache.expect(self._wanted)
        now = self.clock.monotonic()
        for sha in self._wanted:
            if not self.cache.ready(sha) and sha not in self._downloads:
                self._downloads[sha] = Download(sha, next_request=now + self._jittered_holdoff())
        self._wake.set()

    def missing(self) -> set[str]:
        """Clips the schedule needs that are not verified yet."""
        return {sha for sha in self._wanted if not self.cache.ready(sha)}

    def download(self, sha256: str) -> Download | None:
        """The state of one download, if any (tests, diagnostics)."""
        return self._downloads.get(sha256)

    def resume(self) -> None:
        """Load partial downloads kept on disk by a previous run (call before run())."""
        for row in self.db.downloads():
            self._downloads[row.sha256] = Download(
                row.sha256, count=row.chunk_count, received=set(row.received)
            )

    def connected(self) -> None:
        """After a (re)connect, ask again soon for what is still missing."""
        now = self.clock.monotonic()
        for dl in self._downloads.values():
            dl.next_request = min(dl.next_request, now + self._jittered_holdoff())
            dl.backoff_s = 0.0
        self._wake.set()

    # -- work -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Write chunks as they come and send requests when due (until cancelled)."""
        writer = asyncio.create_task(self._write_chunks())
        loop = asyncio.get_running_loop()

        def refetch(_sha: str) -> None:
            # A verified clip deleted as damaged (from a thread) is missing again: ask for it.
            loop.call_soon_threadsafe(self._wake.set)

        self.cache.on_forget = refetch
        try:
            while True:
                await self._forget_unwanted()
                self._request_due()
                self._wake.clear()
                if not self._downloads:
                    # Nothing in flight: sleep until want(), a chunk or a reconnect wakes us
                    # (an idle agent otherwise woke four times a second for nothing).
                    await self._wake.wait()
                    continue
                deadline = self.clock.monotonic() + TICK_S
                sleeper = asyncio.ensure_future(self.clock.sleep_until(deadline))
                waker = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                    waker.cancel()
        finally:
            self.cache.on_forget = None  # the loop may close after this
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _forget_unwanted(self) -> None:
        # Partial clips nobody needs any more (a zone publication cut short, a programme
        # withdrawn) are dropped once chunks have stopped coming for a while.
        now = self.clock.monotonic()
        quiet = max(60.0, 10 * self.holdoff_s)
        for sha, dl in list(self._downloads.items()):
            if sha in self._wanted:
                continue
            if dl.last_chunk is None or now - dl.last_chunk > quiet:
                del self._downloads[sha]
                if dl.count is not None:
                    await asyncio.to_thread(self.cache.discard_part, sha)

    def _jittered_holdoff(self) -> float:
        return self.holdoff_s * random.uniform(0.5, 1.5)

    def _request_due(self) -> None:
        now = self.clock.monotonic()
        for sha in sorted(self.missing()):
            dl = self._downloads.setdefault(sha, Download(sha, next_request=now))
            if now < dl.next_request:
                continue
            if dl.last_chunk is not None and now - dl.last_chunk < self.holdoff_s:
                continue  # chunks are still arriving: let the publication finish
            request = ClipRequest(sha256=sha, chunks=dl.missing())
            if not self._send_request(request):
                continue  # not connected: connected() reschedules
            dl.requests += 1
            self.stats.requests_sent += 1
            dl.backoff_s = min(max(dl.backoff_s * 2, self.holdoff_s * 2), self.retry_max_s)
            dl.next_request = now + dl.backoff_s * random.uniform(0.75, 1.25)
            log.info(
                "clip %s: asked the server for %s",
                sha[:12],
                "every chunk" if request.chunks is None else f"{len(request.chunks)} chunk(s)",
            )

    async def _write_chunks(self) -> None:
        while True:
            topic_sha, payload = await self._queue.get()
            try:
                await self._accept(topic_sha, payload)
            except OSError as exc:
                self.stats.chunks_dropped += 1
                log.error(
                    "cannot write a clip chunk to %s (%s); check the data partition",
                    self.cache.clip_dir,
                    exc,
                )
            except Exception:  # one bad chunk must not stop the fetcher
                self.stats.chunks_dropped += 1
                log.exception("clip chunk handling failed")

    async def _accept(self, topic_sha: str | None, payload: bytes) -> None:
        try:
            chunk = decode_chunk(payload)
        except ChunkError as exc:
            self.stats.chunks_corrupt += 1
            log.warning("dropped a clip chunk (%s); it will be asked for again", exc)
            return
        if topic_sha is not None and chunk.sha256 != topic_sha:
            self.stats.chunks_corrupt += 1
            log.warning("dropped a chunk of %s sent on %s's topic", chunk.sha256, topic_sha)
            return
        if (chunk.count - 1) * CHUNK_SIZE > self.cache.quota_bytes:
            # A clip larger than the whole cache could never be kept; writing at its offset
            # would only make a huge sparse file.
            self.stats.chunks_corrupt += 1
            log.warning(
                "dropped a chunk of %s: %d chunks exceed the cache", chunk.sha256, chunk.count
            )
            return
        sha = chunk.sha256
        if self.cache.ready(sha):
            self.stats.chunks_duplicate += 1
            return
        if sha not in self._downloads:
            self._downloads[sha] = Download(sha)
            self._wake.set()  # the run loop sleeps while nothing is in flight
        dl = self._downloads[sha]
        # Marked busy before the first await, so _forget_unwanted leaves it alone.
        dl.last_chunk = self.clock.monotonic()
        fresh = dl.count != chunk.count
        if fresh:
            if dl.count is not None:
                log.warning("clip %s: chunk count changed; starting it again", sha[:12])
            await asyncio.to_thread(self.db.start_download, sha256=sha, chunk_count=chunk.count)
            dl.count, dl.received = chunk.count, set()
        if chunk.index in dl.received:
            self.stats.chunks_duplicate += 1
            return
        await asyncio.to_thread(
            self.cache.write_chunk, sha, index=chunk.index, data=chunk.data, fresh=fresh
        )
        dl.received.add(chunk.index)
        dl.last_chunk = self.clock.monotonic()
        dl.backoff_s = 0.0
        self.stats.chunks_written += 1
        if len(dl.received) == dl.count:
            await self._finish(dl, chunk)

    async def _finish(self, dl: Download, last: Chunk) -> None:
        sha = dl.sha256
        if await asyncio.to_thread(self.cache.adopt, sha):
            self._downloads.pop(sha, None)
            self.stats.clips_verified += 1
            log.info("clip %s: verified and ready (%d chunks)", sha[:12], last.count)
            if self._on_clip_ready is not None:
                self._on_clip_ready(sha)
            return
        # A wrong whole-file hash: nothing of it can be trusted, so ask for all of it now.
        self.stats.sha_mismatches += 1
        self._downloads[sha] = Download(sha, next_request=self.clock.monotonic())
        self._wake.set()
