"""Clip cache and fetcher: reassembly, verification, requests for missing chunks, eviction."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from audio.clock import Clock, FakeClock, SystemClock
from edge_agent.clipfetch import ClipFetcher
from edge_agent.clips import ClipCache
from edge_agent.localdb import LocalDb
from loa_testkit.harness import eventually
from protocol import ClipRequest
from protocol.clipchunk import CHUNK_SIZE, Chunk, encode_chunk, split

HOLDOFF = 0.2


def blob(size: int, seed: int = 1) -> tuple[bytes, str]:
    data = (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]
    return data, hashlib.sha256(data).hexdigest()


def chunks(data: bytes, sha: str | None = None) -> list[Chunk]:
    return list(split(data, sha))


@dataclass
class FetchRig:
    cache: ClipCache
    db: LocalDb
    fetcher: ClipFetcher
    requests: list[ClipRequest]

    def offer(
        self, chunk: Chunk, *, zone_sha: str | None = None, payload: bytes | None = None
    ) -> None:
        self.fetcher.offer(zone_sha, payload if payload is not None else encode_chunk(chunk))


@asynccontextmanager
async def fetching(
    data_dir: Path,
    *,
    want: list[str] | None = None,
    quota: int = 10**9,
    clock: Clock | None = None,
) -> AsyncIterator[FetchRig]:
    db = LocalDb(data_dir=data_dir)
    await asyncio.to_thread(db.open)
    cache = ClipCache(clip_dir=data_dir / "clips", db=db, quota_bytes=quota)
    downloads = [row.sha256 for row in db.downloads()]
    await asyncio.to_thread(cache.load, downloads=downloads)
    requests: list[ClipRequest] = []

    def send(request: ClipRequest) -> bool:
        requests.append(request)
        return True

    fetcher = ClipFetcher(
        cache=cache,
        db=db,
        clock=clock or SystemClock(),
        send_request=send,
        holdoff_s=HOLDOFF,
        retry_max_s=1.0,
    )
    fetcher.resume()
    if want is not None:
        fetcher.want(want)
    task = asyncio.ensure_future(fetcher.run())
    try:
        yield FetchRig(cache, db, fetcher, requests)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        db.close()


def files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "clips").iterdir())


def test_chunks_in_any_order_become_one_verified_clip(tmp_path: Path) -> None:
    data, sha = blob(3 * CHUNK_SIZE + 100)

    async def scenario() -> None:
        async with fetching(tmp_path, want=[sha]) as rig:
            parts = chunks(data)
            for chunk in [parts[2], parts[0], parts[0], parts[3], parts[1]]:
                rig.offer(chunk, zone_sha=sha)
            await eventually(lambda: rig.cache.ready(sha), what="the clip")
            assert rig.fetcher.stats.chunks_duplicate == 1
            await asyncio.sleep(HOLDOFF * 3)
            assert rig.requests == []  # everything came from the zone: nothing to ask for

    asyncio.run(scenario())
    assert files(tmp_path) == [f"{sha}.opus"]
    assert (tmp_path / "clips" / f"{sha}.opus").read_bytes() == data


def test_a_zone_clip_arriving_before_its_schedule_is_kept(tmp_path: Path) -> None:
    data, sha = blob(6 * CHUNK_SIZE)

    async def scenario() -> None:
        async with fetching(tmp_path) as rig:  # nothing wanted yet
            for chunk in chunks(data):
                rig.offer(chunk, zone_sha=sha)
                await asyncio.sleep(0.05)  # spread over the fetcher's housekeeping ticks
            await eventually(lambda: rig.cache.ready(sha), what="the clip")
            rig.fetcher.want([sha])
            await asyncio.sleep(HOLDOFF * 3)
            assert rig.requests == [] and rig.fetcher.missing() == set()

    asyncio.run(scenario())


def test_exactly_the_missing_chunks_are_requested_after_the_hold_off(tmp_path: Path) -> None:
    data, sha = blob(5 * CHUNK_SIZE)

    async def scenario() -> None:
        async with fetching(tmp_path, want=[sha]) as rig:
            parts = chunks(data)
            for chunk in (parts[0], parts[2], parts[4]):
                rig.offer(chunk, zone_sha=sha)
            await eventually(lambda: len(rig.requests) == 1, what="a request")
            assert rig.requests[0] == ClipRequest(sha256=sha, chunks=[1, 3], ts=rig.requests[0].ts)
            assert not rig.cache.ready(sha) and not rig.cache.path(sha).exists()
            rig.offer(parts[1])  # answers arrive on the device's own topic
            rig.offer(parts[3])
            await eventually(lambda: rig.cache.ready(sha), what="the clip")

    asyncio.run(scenario())


def test_with_nothing_received_every_chunk_is_asked_for_with_backoff(tmp_path: Path) -> None:
    _data, sha = blob(1000)

    async def scenario() -> None:
        async with fetching(tmp_path, want=[sha]) as rig:
            await eventually(lambda: len(rig.requests) >= 3, timeout=10, what="three requests")
            assert all(r.sha256 == sha and r.chunks is None for r in rig.requests)
            assert rig.fetcher.download(sha).backoff_s == 1.0  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_a_corrupt_chunk_is_dropped_and_asked_for_again(tmp_path: Path) -> None:
    data, sha = blob(3 * CHUNK_SIZE)

    async def scenario() -> None:
        async with fetching(tmp_path, want=[sha]) as rig:
            parts = chunks(data)
            broken = bytearray(encode_chunk(parts[1]))
            broken[-10] ^= 0xFF  # one flipped byte: the CRC no longer matches
            rig.offer(parts[0], zone_sha=sha)
            rig.offer(parts[1], zone_sha=sha, payload=bytes(broken))
            rig.offer(parts[2], zone_sha=sha)
            await eventually(lambda: len(rig.requests) == 1, what="a request")
            assert rig.fetcher.stats.chunks_corrupt == 1
            assert rig.requests[0].chunks == [1]
            rig.offer(parts[1])
            await eventually(lambda: rig.cache.ready(sha), what="the clip")

    asyncio.run(scenario())
    assert (tmp_path / "clips" / f"{sha}.opus").read_bytes() == data


def test_a_wrong_sha256_is_deleted_and_fetched_again_in_full(tmp_path: Path) -> None:
    good, sha = blob(2 * CHUNK_SIZE + 5)
    wrong = bytearray(good)
    wrong[CHUNK_SIZE + 1] ^= 0x01  # valid chunks (fresh CRCs), wrong file

    async def scenario() -> None:
        async with fetching(tmp_path, want=[sha]) as rig:
            for chunk in chunks(bytes(wrong), sha):
                rig.offer(chunk, zone_sha=sha)
            await eventually(lambda: rig.fetcher.stats.sha_mismatches == 1, what="the check")
            assert not rig.cache.ready(sha)
            assert files(tmp_path) == []  # neither the bad file nor its temp file remain
            await eventually(lambda: len(rig.requests) == 1, what="a request")
            assert rig.requests[0].chunks is None
            for chunk in chunks(good):
                rig.offer(chunk)
            await eventually(lambda: rig.cache.ready(sha), what="the clip")

    asyncio.run(scenario())
    assert (tmp_path / "clips" / f"{sha}.opus").read_bytes() == good


def test_a_chunk_on_another_clips_topic_is_dropped(tmp_path: Path) -> None:
    data, sha = blob(100)
    _other, other_sha = blob(100, seed=2)

    async def scenario() -> None:
        async with fetching(tmp_path, want=[sha]) as rig:
            rig.offer(chunks(data)[0], zone_sha=other_sha)
            await eventually(lambda: rig.fetcher.stats.chunks_corrupt == 1, what="the drop")
            assert not rig.cache.ready(sha)

    asyncio.run(scenario())


def test_a_restart_resumes_a_partial_download_which_is_never_playable(tmp_path: Path) -> None:
    data, sha = blob(4 * CHUNK_SIZE)
    parts = chunks(data)

    async def first_run() -> None:
        async with fetching(tmp_path, want=[sha]) as rig:
            rig.offer(parts[0], zone_sha=sha)
            rig.offer(parts[3], zone_sha=sha)
            await eventually(lambda: rig.fetcher.stats.chunks_written == 2, what="two chunks")

    async def second_run() -> None:
        async with fetching(tmp_path, want=[sha]) as rig:
            assert not rig.cache.ready(sha)
            assert rig.fetcher.download(sha).received == {0, 3}  # type: ignore[union-attr]
            await eventually(lambda: len(rig.requests) == 1, what="a request")
            assert rig.requests[0].chunks == [1, 2]
            rig.offer(parts[1])
            rig.offer(parts[2])
            await eventually(lambda: rig.cache.ready(sha), what="the clip")

    asyncio.run(first_run())
    assert files(tmp_path) == [f"{sha}.part"]
    asyncio.run(second_run())
    assert files(tmp_path) == [f"{sha}.opus"]


def test_loading_removes_leftovers_and_rechecks_unindexed_clips(tmp_path: Path) -> None:
    good, good_sha = blob(500, seed=3)
    _bad, bad_sha = blob(500, seed=4)
    clip_dir = tmp_path / "clips"
    clip_dir.mkdir()
    (clip_dir / f"{good_sha}.opus").write_bytes(good)  # renamed in, then the crash
    (clip_dir / f"{bad_sha}.opus").write_bytes(b"damaged")
    (clip_dir / f"{bad_sha}.part").write_bytes(b"no download knows me")
    (clip_dir / ".tmp-junk").write_bytes(b"x")

    async def scenario() -> None:
        async with fetching(tmp_path) as rig:
            assert rig.cache.ready(good_sha) and not rig.cache.ready(bad_sha)

    asyncio.run(scenario())
    assert files(tmp_path) == [f"{good_sha}.opus"]


def test_over_quota_the_least_recently_used_unpinned_clips_go(tmp_path: Path) -> None:
    clips = [blob(1000, seed=10 + n) for n in range(4)]
    shas = [sha for _d, sha in clips]

    async def add(rig: FetchRig, n: int) -> None:
        data, sha = clips[n]
        rig.offer(chunks(data)[0])
        await eventually(lambda: rig.cache.ready(sha), what=f"clip {n}")

    async def scenario() -> None:
        async with fetching(tmp_path, quota=3500) as rig:
            await asyncio.to_thread(rig.cache.pin, [shas[0]])
            for n in range(3):
                await add(rig, n)
            await asyncio.to_thread(rig.cache.touch, shas[1])  # played: newer than clip 2
            await add(rig, 3)
            # 0 is pinned (oldest, kept), 1 was used recently, 3 is new: 2 goes.
            assert rig.cache.shas() == {shas[0], shas[1], shas[3]}
            assert rig.cache.used_bytes == 3000 and rig.cache.evicted == 1
            assert not rig.cache.path(shas[2]).exists()

    asyncio.run(scenario())


def test_pinned_clips_stay_even_over_quota(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clips = [blob(1000, seed=20 + n) for n in range(3)]

    async def scenario() -> None:
        async with fetching(tmp_path, quota=1500) as rig:
            rig.cache.pin([sha for _d, sha in clips])
            for data, sha in clips:
                rig.offer(chunks(data)[0])
                await eventually(lambda: rig.cache.ready(sha), what="a clip")  # noqa: B023
            assert rig.cache.used_bytes == 3000 and rig.cache.evicted == 0

    asyncio.run(scenario())
    assert "more than the quota" in caplog.text


def test_a_chunk_of_a_clip_larger_than_the_cache_is_dropped_unwritten(tmp_path: Path) -> None:
    _data, sha = blob(100)
    # Chunk 2**32 - 2 of 2**32 - 1: would be written 281 TB into a sparse file.
    huge = Chunk(sha256=sha, index=2**32 - 2, count=2**32 - 1, data=b"x")

    async def scenario() -> None:
        async with fetching(tmp_path, quota=10 * CHUNK_SIZE) as rig:
            rig.offer(huge)
            await eventually(lambda: rig.fetcher.stats.chunks_corrupt == 1, what="the drop")
            assert rig.fetcher.stats.chunks_dropped == 0  # refused before any write
            assert rig.fetcher.download(sha) is None and files(tmp_path) == []

    asyncio.run(scenario())


def test_the_fetcher_sleeps_while_nothing_is_in_flight(tmp_path: Path) -> None:
    data, sha = blob(3 * CHUNK_SIZE)
    clock = FakeClock()

    async def scenario() -> None:
        async with fetching(tmp_path, clock=clock) as rig:
            for _ in range(20):
                await asyncio.sleep(0)
            assert clock.next_deadline() is None  # idle: no housekeeping tick at all
            rig.offer(chunks(data)[0], zone_sha=sha)  # a zone clip nobody wants (yet)
            await eventually(lambda: clock.next_deadline() is not None, what="the tick")
            clock.advance(61.0)  # chunks stopped coming: the partial clip is dropped
            await eventually(lambda: rig.fetcher.download(sha) is None, what="forgetting it")
            await eventually(lambda: clock.next_deadline() is None, what="sleeping again")
            assert files(tmp_path) == []

    asyncio.run(scenario())
