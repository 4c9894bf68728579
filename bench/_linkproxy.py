"""A user-space TCP proxy that makes a loopback link look like a bad 4G one (no tc netem here).

Per connection and per direction: one-way delay with jitter (order preserved, as TCP
delivers), a bandwidth cap (token bucket), periodic stalls (a hand-over: nothing moves for a
few seconds), and hard cuts (both sockets closed) on demand or on a schedule. TCP shows no
packet loss to the application; loss appears as retransmission delay, so it is modelled as
jitter and stalls. Used by bench/field_link.py and tests/integration/test_field_link.py;
never shipped to devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

READ_SIZE = 4096  # small reads, so the bandwidth cap paces data instead of letting bursts through


@dataclass(frozen=True)
class LinkProfile:
    """What the link does to the bytes crossing it (each direction alike)."""

    delay_s: float = 0.0  # one-way base delay
    jitter_s: float = 0.0  # uniform +- around the base (never below zero)
    rate_bps: float | None = None  # bits per second, None for no cap
    burst_bytes: int = 8192  # the token bucket's depth
    stall_every_s: float | None = None  # a stall starts this often (from the connection's start)
    stall_s: float = 0.0  # and lasts this long
    cut_after_s: float | None = None  # close both sides this long after the connection opens

    def describe(self) -> dict[str, object]:
        """The profile as JSON-friendly figures (for benchmark output)."""
        return {
            "delay_ms": round(self.delay_s * 1000),
            "jitter_ms": round(self.jitter_s * 1000),
            "rate_kbit_s": None if self.rate_bps is None else round(self.rate_bps / 1000),
            "stall_s": self.stall_s if self.stall_every_s else 0,
            "stall_every_s": self.stall_every_s,
        }


BAD_4G = LinkProfile(
    delay_s=0.100, jitter_s=0.040, rate_bps=384_000, stall_every_s=60.0, stall_s=3.0
)


class TokenBucket:
    """Bandwidth cap: `take(n)` says how long to wait before n more bytes may leave."""

    def __init__(self, *, rate_bps: float, burst_bytes: int, now: float) -> None:
        self.rate = rate_bps / 8  # bytes per second
        self.burst = float(burst_bytes)
        self.tokens = float(burst_bytes)
        self.stamp = now

    def take(self, n: int, now: float) -> float:
        """Spend n bytes' tokens (may go negative); the seconds to wait until they are paid."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def stall_end(profile: LinkProfile, since_open: float) -> float | None:
    """If `since_open` falls inside a stall, the connection-relative time it ends; else None."""
    if not profile.stall_every_s or profile.stall_s <= 0:
        return None
    period = profile.stall_every_s
    phase = since_open % period
    start = period - profile.stall_s  # the stall closes each period, so a link starts usable
    if phase >= start:
        return since_open - phase + period
    return None


class _Pipe:
    """One direction of one connection: read, pace, delay, write, in order."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        profile: LinkProfile,
        opened: float,
        rng: random.Random,
        clock: Callable[[], float],
        on_bytes: Callable[[int], None],
    ) -> None:
        self.on_bytes = on_bytes
        self.reader, self.writer = reader, writer
        self.profile, self.opened, self.rng, self.clock = profile, opened, rng, clock
        self.bucket = (
            None
            if profile.rate_bps is None
            else TokenBucket(rate_bps=profile.rate_bps, burst_bytes=profile.burst_bytes, now=opened)
        )
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._last_due = 0.0

    async def read_side(self) -> None:
        """Take bytes in, stamp each read with the time it may be delivered."""
        try:
            while data := await self.reader.read(READ_SIZE):
                now = self.clock()
                ready = now
                if self.bucket is not None:
                    ready += self.bucket.take(len(data), now)
                    # Reading further ahead than the bucket allows would buffer without bound.
                    await asyncio.sleep(max(0.0, ready - now))
                jitter = self.rng.uniform(-self.profile.jitter_s, self.profile.jitter_s)
                due = max(ready + max(0.0, self.profile.delay_s + jitter), self._last_due)
                self._last_due = due  # TCP delivers in order: a fast segment waits for a slow one
                self.queue.put_nowait((due, data))
        finally:
            self.queue.put_nowait((0.0, b""))

    async def write_side(self) -> None:
        """Deliver each read at its time, holding everything during a stall."""
        while True:
            due, data = await self.queue.get()
            if not data:
                with contextlib.suppress(Exception):
                    self.writer.write_eof()  # pass the half-close on, as a router would
                break
            while True:
                now = self.clock()
                end = stall_end(self.profile, now - self.opened)
                if end is not None:
                    await asyncio.sleep(self.opened + end - now)
                    continue
                if due > now:
                    await asyncio.sleep(due - now)
                    continue
                break
            self.writer.write(data)
            self.on_bytes(len(data))
            await self.writer.drain()


class LinkProxy:
    """Listens on a free loopback port and forwards every connection to `target_port`."""

    def __init__(
        self,
        target_port: int,
        profile: LinkProfile,
        *,
        target_host: str = "127.0.0.1",
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = (target_host, target_port)
        self.profile = profile
        self.rng = random.Random(seed)
        self.clock = clock
        self.host = "127.0.0.1"
        self.port = 0
        self.connections = 0
        self.cuts = 0
        self.bytes_down = 0  # broker -> client, delivered
        self.bytes_up = 0
        self.blocked = False  # while True, new connections are refused (a long outage)
        self._server: asyncio.Server | None = None
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> LinkProxy:
        """Bind and start accepting; returns self."""
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop accepting and drop every connection."""
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def cut(self) -> int:
        """Hard cut: close both sides of every open connection now; how many were cut."""
        cut = 0
        for client, upstream in list(self._open):
            for w in (client, upstream):
                with contextlib.suppress(Exception):
                    w.transport.abort()
            cut += 1
        self._open.clear()
        self.cuts += cut
        return cut

    def cut_when(self, check: Callable[[], bool], *, poll_s: float = 0.002) -> asyncio.Task[None]:
        """Cut as soon as check() is true (e.g. some chunks of a clip have arrived)."""

        async def watch() -> None:
            while not check():  # noqa: ASYNC110 - a condition on counters, no event to wait on
                await asyncio.sleep(poll_s)
            self.cut()

        return self._spawn(watch())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            c_writer.transport.abort()
            return
        try:
            u_reader, u_writer = await asyncio.open_connection(*self.target)
        except OSError:
            c_writer.transport.abort()
            return
        self.connections += 1
        pair = (c_writer, u_writer)
        self._open.add(pair)
        opened = self.clock()
        up = _Pipe(c_reader, u_writer, profile=self.profile, opened=opened, rng=self.rng,
                   clock=self.clock, on_bytes=self._count_up)  # fmt: skip
        down = _Pipe(u_reader, c_writer, profile=self.profile, opened=opened, rng=self.rng,
                     clock=self.clock, on_bytes=self._count_down)  # fmt: skip
        parts = [up.read_side(), up.write_side(), down.read_side(), down.write_side()]
        tasks = [asyncio.ensure_future(p) for p in parts]
        if self.profile.cut_after_s is not None:
            tasks.append(asyncio.ensure_future(self._cut_later(pair, self.profile.cut_after_s)))
        for t in tasks:
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        try:
            # One side closing (or a cut) ends the connection: close both.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            pass
        finally:
            for t in tasks:
                t.cancel()
            for w in pair:
                with contextlib.suppress(Exception):
                    w.transport.abort()
            self._open.discard(pair)

    def _count_up(self, n: int) -> None:
        self.bytes_up += n

    def _count_down(self, n: int) -> None:
        self.bytes_down += n

    async def _cut_later(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
                         after: float) -> None:  # fmt: skip
        await asyncio.sleep(after)
        if pair in self._open:
            self._open.discard(pair)
            self.cuts += 1
            for w in pair:
                w.transport.abort()
