"""The link-impairment proxy itself: delay, order, bandwidth, stalls and cuts, measured outside."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench._linkproxy import LinkProfile, LinkProxy, TokenBucket, stall_end  # noqa: E402
from loa_testkit.harness import run  # noqa: E402


def test_token_bucket_paces_at_the_rate() -> None:
    bucket = TokenBucket(rate_bps=8000, burst_bytes=1000, now=0.0)  # 1000 bytes/s
    assert bucket.take(1000, 0.0) == 0.0  # the burst goes at once
    assert bucket.take(500, 0.0) == 0.5  # then 500 bytes cost half a second
    assert bucket.take(500, 1.0) == 0.0  # a second later 1000 tokens came back, 500 were owed


def test_stall_window_closes_each_period() -> None:
    profile = LinkProfile(stall_every_s=10.0, stall_s=3.0)
    assert stall_end(profile, 0.0) is None
    assert stall_end(profile, 6.9) is None
    assert stall_end(profile, 7.0) == 10.0
    assert stall_end(profile, 19.5) == 20.0
    assert stall_end(LinkProfile(), 7.0) is None


@asynccontextmanager
async def echo_through(profile: LinkProfile) -> AsyncIterator[tuple[LinkProxy, list[bool]]]:
    """An echo server behind a proxy; the list records whether the server saw its peer close."""
    closed: list[bool] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        closed.append(True)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxy = await LinkProxy(server.sockets[0].getsockname()[1], profile, seed=1).start()
    try:
        yield proxy, closed
    finally:
        await proxy.close()
        server.close()


async def read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), 20)


def test_delay_applies_each_way_and_order_is_kept() -> None:
    async def body() -> None:
        async with echo_through(LinkProfile(delay_s=0.1, jitter_s=0.04)) as (proxy, _):
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            began = time.monotonic()
            writer.write(b"ping")
            assert await read_exactly(reader, 4) == b"ping"
            rtt = time.monotonic() - began
            assert 0.12 <= rtt <= 2.0, rtt  # 2 x (100 +- 40 ms), plus a loaded machine
            lines = b"".join(b"%05d\n" % i for i in range(300))
            for i in range(0, len(lines), 6):  # many small writes, each jittered
                writer.write(lines[i : i + 6])
                await asyncio.sleep(0)
            assert await read_exactly(reader, len(lines)) == lines
            writer.close()

    run(body(), 30)


def test_bandwidth_cap_bounds_throughput() -> None:
    async def body() -> None:
        profile = LinkProfile(rate_bps=400_000, burst_bytes=4096)
        async with echo_through(profile) as (proxy, _):
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            payload = bytes(25_000)  # 200 kbit: 0.5 s up, then 0.5 s down (pipelined)
            began = time.monotonic()
            writer.write(payload)
            await read_exactly(reader, len(payload))
            took = time.monotonic() - began
            assert 0.4 <= took <= 5.0, took
            assert proxy.bytes_up == proxy.bytes_down == len(payload)
            writer.close()

    run(body(), 30)


def test_stall_holds_bytes_until_it_ends() -> None:
    async def body() -> None:
        async with echo_through(LinkProfile(stall_every_s=1.0, stall_s=0.6)) as (proxy, _):
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            opened = time.monotonic()
            writer.write(b"a")
            assert await read_exactly(reader, 1) == b"a"
            assert time.monotonic() - opened < 0.4  # before the first stall
            await asyncio.sleep(max(0.0, opened + 0.5 - time.monotonic()))
            writer.write(b"b")  # during the stall (0.4 .. 1.0 s)
            assert await read_exactly(reader, 1) == b"b"
            assert time.monotonic() - opened >= 0.95
            writer.close()

    run(body(), 30)


def test_cut_closes_both_sides_and_blocked_refuses() -> None:
    async def body() -> None:
        async with echo_through(LinkProfile()) as (proxy, closed):
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            writer.write(b"x")
            await read_exactly(reader, 1)
            assert proxy.cut() == 1
            assert await asyncio.wait_for(reader.read(10), 5) == b""
            await asyncio.wait_for(_until(lambda: bool(closed)), 5)  # the server saw it too
            proxy.blocked = True
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            assert await asyncio.wait_for(reader.read(10), 5) == b""
            assert proxy.connections == 1

    run(body(), 30)


def test_scheduled_cut() -> None:
    async def body() -> None:
        async with echo_through(LinkProfile(cut_after_s=0.3)) as (proxy, _):
            reader, _writer = await asyncio.open_connection(proxy.host, proxy.port)
            began = time.monotonic()
            assert await asyncio.wait_for(reader.read(10), 5) == b""
            assert time.monotonic() - began >= 0.25
            assert proxy.cuts == 1

    run(body(), 30)


async def _until(check: object) -> None:
    while not check():  # type: ignore[operator]  # noqa: ASYNC110
        await asyncio.sleep(0.01)
