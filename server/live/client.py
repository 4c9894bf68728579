"""`loa-server live`: stream a local file, a line-in or a pipe to zones as a live session.

The client speaks the public API only: it signs in, POSTs /api/v1/live with source "mic",
then pushes 48 kHz mono s16le over the session's ingest WebSocket, 20 ms per binary message.
The bearer token goes in the first (text) message, never in the URL: a URL ends up in access
logs (protocol/README.md, "Microphone ingest").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from audio.decode import iter_pcm_frames
from audio.errors import AudioError
from audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm, to_bytes
from server.live.sources import IngestError, PushDecoder

T = TypeVar("T")
Say = Callable[[str], None]

FRAME_BYTES = FRAME_SAMPLES * 2  # 20 ms of 48 kHz mono s16le: one WebSocket message
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
# How far the sent audio may run ahead of the wall clock: absorbs a bursty producer and event
# loop jitter, while the server's queue (2 s, oldest dropped beyond) never overflows.
AHEAD_S = 0.2
# A live pipe (see Pacer) with more than this ready at once hands over a stale backlog: the
# oldest is dropped, the newest sent at once (the server drops what is still older than its
# stamps allow: server/live/buffer.py).
LIVE_KEEP_S = 0.1
# Until a pipe is known to be paced, and while a live one's start is kept, it runs ahead by
# no more than this: enough for the event loop's late wake-ups, little for the server's lead.
START_AHEAD_S = 2 * FRAME_S
PROBE_S = 1.0
# A pipe is live when, at the end of the probe, at least this many of its last RECENT_READS
# reads had to wait for data: a producer faster than real time always has the next one ready,
# a live one hardly ever (only while it hands over a backlog after a hiccup).
RECENT_READS = 10
LIVE_WAITED = 3
# After the last chunk, wait until the server has played what it queued (AHEAD_S, plus its
# 0.1 s prefill after an underrun, plus jitter) before saying stop: stop ends the session
# with the next frame, dropping whatever is still queued.
DRAIN_S = 0.3
CLOSE_ENDED = 4000  # the server's close code for "the session ended" (server/live/routes.py)
HTTP_TIMEOUT_S = 15.0
PROGRESS_S = 5.0
# A device answers its join once it can decode (a second or more on a Pi the first time): the
# client says when all are ready, or how many are after this long.
READY_WAIT_S = 3.0
READY_POLL_S = 0.25
STOP_WAIT_S = 5.0


class ClientError(Exception):
    """A problem the operator can act on; the message says what happened."""


@dataclass(frozen=True, slots=True)
class LiveRequest:
    """What to broadcast and where (the body of POST /api/v1/live, source "mic")."""

    zone_ids: tuple[int, ...] = ()
    org_unit_id: int | None = None
    priority: str = "normal"
    playout_delay_ms: int | str = 500  # or "auto": the server chooses
    label: str = ""
    duration_s: float | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        out: dict[str, Any] = {
            "source": "mic",
            "zone_ids": list(self.zone_ids),
            "priority": self.priority,
            "playout_delay_ms": self.playout_delay_ms,
            "label": self.label,
        }
        if self.org_unit_id is not None:
            out["org_unit_id"] = self.org_unit_id
        if self.duration_s is not None:
            out["duration_s"] = self.duration_s
        return out


# -- HTTP (stdlib urllib in a worker thread: the server extra needs no HTTP client) ---------


def check_server(server: str) -> str:
    """The server's base URL without a trailing slash, or ClientError."""
    if not server.startswith(("http://", "https://")):
        raise ClientError(f"--server must be an http:// or https:// URL, not {server!r}.")
    return server.rstrip("/")


def call_api(
    *,
    server: str,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
    form: dict[str, str] | None = None,
) -> Any:
    """One API call (blocking); the JSON answer, or ClientError with the server's detail."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"{server}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise ClientError(f"{_detail(exc.read())} (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ClientError(f"Cannot reach the server at {server}: {reason}.") from None
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        raise ClientError(f"{server} did not answer with JSON: is it a Loa server?") from None


def _detail(raw: bytes) -> str:
    """The API's human-readable `detail`, else the start of the body."""
    with contextlib.suppress(ValueError, AttributeError):
        detail = json.loads(raw).get("detail")
        if isinstance(detail, str) and detail:
            return detail
    return raw.decode("utf-8", "replace").strip()[:200] or "The server refused the request."


def sign_in(*, server: str, username: str, password: str) -> str:
    """Exchange a username and password for a bearer token (blocking)."""
    answer = call_api(
        server=server,
        method="POST",
        path="/api/v1/auth/token",
        form={"username": username, "password": password},
    )
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str):
        raise ClientError("The server's sign-in answer carried no access token.")
    return token


def ingest_url(*, server: str, session: dict[str, Any]) -> str:
    """The ws(s):// address of a session's ingest (no credentials in it)."""
    path = session.get("ingest_url") or f"/api/v1/live/{session['id']}/ingest"
    scheme, rest = server.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"


def hello(token: str, *, live: bool) -> str:
    """The first message: the bearer token, the format of the audio, whether it is real time."""
    return json.dumps(
        {"token": token, "format": "pcm_s16le", "sample_rate": SAMPLE_RATE, "live": live}
    )


# -- audio in -----------------------------------------------------------------------------


class Source(Protocol):
    """20 ms chunks of 48 kHz mono s16le; b"" at the end."""

    async def read(self) -> bytes:
        """The next chunk (FRAME_BYTES, the last may be shorter) or b"" at the end."""
        ...


class FileSource:
    """An audio file FFmpeg reads (PyAV, audio/decode.py), decoded in a worker thread."""

    BLOCK = 25  # frames per thread hop: half a second

    def __init__(self, frames: Iterator[Pcm], first: list[Pcm]) -> None:
        self._frames = frames
        self._ready = list(first)

    async def read(self) -> bytes:
        """The next 20 ms, decoding the next half second when needed."""
        if not self._ready:
            self._ready = await asyncio.to_thread(_next_block, self._frames, self.BLOCK)
        return to_bytes(self._ready.pop(0)) if self._ready else b""


def _next_block(frames: Iterator[Pcm], count: int) -> list[Pcm]:
    """Up to `count` decoded frames; decoding errors become ClientError."""
    out: list[Pcm] = []
    try:
        for pcm in frames:
            out.append(pcm)
            if len(out) >= count:
                break
    except AudioError as exc:
        raise ClientError(exc.message) from None
    return out


async def open_file(path: Path) -> FileSource:
    """Check the file decodes (before any session starts) and return it as a source."""
    frames = iter_pcm_frames(path)
    first = await asyncio.to_thread(_next_block, frames, FileSource.BLOCK)
    if not first:
        raise ClientError(f"{path.name} contains no audio.")
    return FileSource(frames, first)


class PipeSource:
    """Raw s16le mono from a pipe (stdin), read by a daemon thread, resampled to 48 kHz.

    The thread hands reads over in a locked deque, not one loop hop per read, so a backlog
    (a live source after a hiccup) is visible at once to `drop_stale`.
    """

    QUEUE = 50  # reads in flight: a producer faster than real time waits in its thread

    def __init__(self, *, stream: BinaryIO, rate: int) -> None:
        try:
            self._decoder = PushDecoder(fmt="pcm_s16le", sample_rate=rate)
        except IngestError as exc:
            raise ClientError(str(exc)) from None
        self._stream = stream
        self._rate = rate
        self._read_bytes = max(2, FRAME_BYTES * rate // SAMPLE_RATE // 2 * 2)
        # Reads waiting to be taken, each with whether it waited for the producer.
        self._reads: collections.deque[tuple[bytes, bool]] = collections.deque()
        # For each of the last reads from the pipe: did it wait for the producer (see Pacer)?
        self.waited: collections.deque[bool] = collections.deque(maxlen=RECENT_READS)
        self.caught_up = False  # the last read waited for the producer: nothing was behind
        self._last_waited = True  # the last read taken waited for the producer (not a backlog)
        self._lock = threading.Condition()
        self._ready: asyncio.Event | None = None
        self._pending = b""
        self._eof = False

    def _start(self) -> asyncio.Event:
        """Start reading now (not earlier: a stale backlog would become latency)."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()

        read_s = self._read_bytes / 2 / self._rate

        def reader() -> None:
            while True:
                t0 = time.monotonic()
                try:
                    data = self._stream.read(self._read_bytes) or b""
                except (OSError, ValueError):
                    data = b""
                # Waited for the producer most of the read's own duration: real time.
                waited = time.monotonic() - t0 > read_s / 2
                with self._lock:
                    self.waited.append(waited)
                    while len(self._reads) >= self.QUEUE:
                        self._lock.wait(0.5)
                    self._reads.append((data, waited))
                try:
                    loop.call_soon_threadsafe(ready.set)
                except RuntimeError:
                    return  # the loop is gone
                if not data:
                    return

        # A daemon thread, not to_thread: a blocked read must not hold up the exit.
        threading.Thread(target=reader, name="loa-live-stdin", daemon=True).start()
        return ready

    def start(self) -> asyncio.Event:
        """Start reading the pipe now (the session is open: what comes from now on is fresh)."""
        if self._ready is None:
            self._ready = self._start()
        return self._ready

    def ready(self) -> int:
        """Reads waiting to be taken."""
        with self._lock:
            return len(self._reads)

    async def more_ready(self) -> bool:
        """Whether another read waits; in a backlog, the reader thread gets a moment for it.

        Right after a hiccup the loop can take reads faster than the thread hands them over
        (a busy machine): an empty queue then does not mean the backlog ended.
        """
        ready = self.start()
        with self._lock:
            if self._reads:
                return True
            if self._last_waited or self._eof:
                return False
            ready.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), FRAME_S)
        return self.ready() > 0

    def waiting_s(self) -> float:
        """Seconds of reads waiting to be taken."""
        with self._lock:
            return sum(len(data) for data, _ in self._reads) / 2 / self._rate

    def drop_stale(self, *, keep_s: float) -> float:
        """Drop all but the newest `keep_s` of reads waiting; the seconds dropped."""
        keep = max(1, round(keep_s * self._rate * 2 / self._read_bytes))
        dropped = 0
        with self._lock:
            # The end of the pipe (b"") is never dropped.
            while len(self._reads) > keep and self._reads[0][0]:
                dropped += len(self._reads.popleft()[0])
            self._lock.notify_all()
        return dropped / 2 / self._rate

    async def _next(self) -> bytes:
        """The oldest read waiting, waiting for one.

        Caught up only if this loop waited and the read itself waited for the producer:
        outpacing the reader thread through a backlog (a busy machine) is not real time.
        """
        ready = self.start()
        waited_here = False
        while True:
            with self._lock:
                if self._reads:
                    data, waited = self._reads.popleft()
                    self._lock.notify_all()
                    self.caught_up = waited_here and waited
                    self._last_waited = waited
                    return data
                ready.clear()
            await ready.wait()
            waited_here = True

    async def read(self) -> bytes:
        """The next 20 ms of 48 kHz samples, or b"" once the pipe closed and all was sent."""
        while len(self._pending) < FRAME_BYTES and not self._eof:
            data = await self._next()
            if not data:
                self._eof = True
                break
            data = data[: len(data) // 2 * 2]  # an odd byte can only be the pipe's last
            self._pending += to_bytes(self._decoder.decode(data)) if data else b""
        chunk, self._pending = self._pending[:FRAME_BYTES], self._pending[FRAME_BYTES:]
        return chunk


async def open_source(*, input_path: str, rate: int, stdin: BinaryIO | None = None) -> Source:
    """A FileSource for a path, a PipeSource for "-" (raw s16le mono at `rate`)."""
    if input_path == "-":
        return PipeSource(stream=stdin or sys.stdin.buffer, rate=rate)
    return await open_file(Path(input_path))


# -- pacing and sending -------------------------------------------------------------------


class Pacer:
    """Never more than AHEAD_S of audio ahead of the wall clock; stalls are not caught up.

    A pipe is either a producer faster than real time (a file piped in: its audio is content,
    paced, never dropped) or a live one (a line-in: it delivers in real time, and after a
    hiccup hands over its backlog at once). Which it is shows after PROBE_S: a fast producer
    always has its next read ready, a live one makes most reads wait (counting the pacer's
    waits instead took a live source whose first second had a hiccup under load for a fast
    one, and its audio then queued up unseen). From a live one, more than LIVE_KEEP_S ready
    at once is a stale backlog: the oldest is dropped (counted), so latency does not grow by
    the hiccup; and a live source is never held back (`holds`): it is real time by itself,
    and audio waiting here would be latency the server cannot see (it measures age from
    arrival).

    The start of an announcement is never dropped: what the pipe held before the first
    chunk went, or handed over at once during the probe, is content. What of it still waits
    here when the probe ends (`kept_s`) stays the session's latency, like the server's lead:
    the source is then held to the wall clock (the server would drop it as a backlog if it
    came at once), and only a backlog beyond it is stale. Until the pipe is known to be
    paced it runs at most START_AHEAD_S ahead of the wall clock: the server takes the age of
    the first audio it plays for the whole session's latency (its `lead`), so a start sent
    AHEAD_S at once would stamp every frame too late for the devices.
    """

    def __init__(
        self, *, may_drop: bool = False, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.sent_s = 0.0
        self.dropped_s = 0.0
        self.live: bool | None = None if may_drop else False
        self.kept_s = 0.0  # a live pipe's start still waiting after the probe: kept as latency
        self._clock = clock
        self._end = clock()  # when the audio sent so far will have been played

    def ahead_s(self) -> float:
        """Seconds of sent audio not yet due."""
        return max(0.0, self._end - self._clock())

    @property
    def holds(self) -> bool:
        """Whether chunks wait for the wall clock (not a live source with nothing kept)."""
        return self.live is not True or self.kept_s > 0

    def hold_s(self) -> float:
        """How long the next chunk waits: AHEAD_S of slack only once the pipe is known paced."""
        return max(0.0, self.ahead_s() - (AHEAD_S if self.live is False else START_AHEAD_S))

    def stale(self, n_bytes: int, *, more_ready: bool) -> bool:
        """From a live source: is a chunk read now part of a backlog? (then drop it, counted)

        Audio sent runs ahead of the wall clock only by what arrived at once after a hiccup;
        beyond LIVE_KEEP_S of it, the oldest chunks are stale. The newest one read (nothing
        more ready) is never stale: dropping fresh audio would leave the server's queue
        short, and the audio then plays earlier than its stamps say.
        """
        if self.holds or not more_ready or self.ahead_s() <= LIVE_KEEP_S:
            return False
        self.dropped_s += n_bytes / 2 / SAMPLE_RATE
        return True

    async def wait(self) -> None:
        """Sleep until another chunk may go."""
        await asyncio.sleep(self.hold_s())

    def probe(self, source: Source) -> None:
        """Learn what the source is in its first PROBE_S; from a live one, drop stale backlog."""
        if self.live is None and self.sent_s >= PROBE_S:
            waited = source.waited if isinstance(source, PipeSource) else ()
            self.live = sum(waited) >= LIVE_WAITED
            if self.live and isinstance(source, PipeSource):
                # Up to LIVE_KEEP_S waiting is the usual jitter; more is a start kept whole.
                waiting = source.waiting_s()
                self.kept_s = waiting if waiting > LIVE_KEEP_S else 0.0
        if self.live and isinstance(source, PipeSource):
            self.dropped_s += source.drop_stale(keep_s=LIVE_KEEP_S + self.kept_s)

    def sent(self, n_bytes: int, *, caught_up: bool = False) -> None:
        """Account for a chunk that went (`caught_up`: a live source's read had to wait).

        A live sender that waited for its source is behind it by nothing: what it sent
        before is played or queued at the server, which minds its age; counting it as
        ahead would take the next fresh chunks for backlog.
        """
        seconds = n_bytes / 2 / SAMPLE_RATE
        self.sent_s += seconds
        now = self._clock()
        self._end = (now if caught_up and self.live else max(self._end, now)) + seconds


async def or_stop(aw: Awaitable[T], stop: asyncio.Event) -> T | None:
    """The result of `aw`, or None (and `aw` cancelled) as soon as `stop` is set."""
    task = asyncio.ensure_future(aw)
    waiter = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return None


async def pump(*, ws: ClientConnection, source: Source, pacer: Pacer, stop: asyncio.Event) -> bool:
    """Send chunks in real time; True at the end of the input, False when stopped."""
    while True:
        unknown = pacer.live is None
        pacer.probe(source)  # before reading: what is read next is the freshest kept
        if unknown and pacer.live is False:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "paced"}))  # the server then drops nothing
        chunk = await or_stop(source.read(), stop)
        if chunk is None:
            return False
        if not chunk:
            return True
        # Only a live source's chunks can be stale; the others never wait for this.
        more_ready = False
        if not pacer.holds and isinstance(source, PipeSource):
            more_ready = await source.more_ready()
        if pacer.stale(len(chunk), more_ready=more_ready):
            continue
        if pacer.holds:
            await or_stop(pacer.wait(), stop)
        if stop.is_set():
            return False
        try:
            await ws.send(chunk)
        except ConnectionClosed:
            return False
        pacer.sent(len(chunk), caught_up=isinstance(source, PipeSource) and source.caught_up)


# -- the whole broadcast ------------------------------------------------------------------


@dataclass
class Broadcast:
    """One running session seen from the client."""

    server: str
    token: str
    session: dict[str, Any]
    say: Say

    @property
    def id(self) -> str:
        """The session id."""
        return str(self.session["id"])

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        """An API call off the event loop."""
        return await asyncio.to_thread(
            call_api, server=self.server, method=method, path=path, token=self.token, body=body
        )

    async def view(self) -> dict[str, Any] | None:
        """The session as GET /api/v1/live lists it (None if it is gone or unreachable)."""
        with contextlib.suppress(ClientError):
            for item in await self.api("GET", "/api/v1/live") or []:
                if item.get("id") == self.id:
                    return dict(item)
        return None

    async def progress(self, pacer: Pacer) -> None:
        """When the devices are ready, then every few seconds what was sent, on stderr."""
        await self.readiness()
        while True:
            await asyncio.sleep(PROGRESS_S)
            view = await self.view()
            heard = f", {view['listeners']}/{view['targeted']} listening" if view else ""
            self.say(f"live {self.id}: {pacer.sent_s:.0f} s sent{heard}")

    async def readiness(self) -> None:
        """Say once every targeted device can play (it answers its join only then), or how
        many could after READY_WAIT_S: what is said before that is not heard everywhere."""
        deadline = time.monotonic() + READY_WAIT_S
        while True:
            view = await self.view()
            if view is None or view.get("state") != "running":
                return
            ready, targeted = int(view["listeners"]), int(view["targeted"])
            if ready >= targeted:
                self.say(f"live {self.id}: {ready}/{targeted} devices ready")
                return
            if time.monotonic() >= deadline:
                self.say(
                    f"live {self.id}: {ready}/{targeted} devices ready after {READY_WAIT_S:g} s;"
                    " the others start hearing it when they join"
                )
                return
            await asyncio.sleep(READY_POLL_S)

    async def stop_on_server(self) -> None:
        """DELETE the session if it still runs (ignores a session already ended)."""
        view = await self.view()
        if view is None or view.get("state") == "running":
            with contextlib.suppress(ClientError):
                await self.api("DELETE", f"/api/v1/live/{self.id}")


async def start_session(*, server: str, token: str, request: LiveRequest, say: Say) -> Broadcast:
    """POST /api/v1/live; the session to feed."""
    session = await asyncio.to_thread(
        call_api, server=server, method="POST", path="/api/v1/live", token=token,
        body=request.body(),
    )  # fmt: skip
    if not isinstance(session, dict) or "id" not in session:
        raise ClientError("The server's answer carried no session id.")
    return Broadcast(server=server, token=token, session=session, say=say)


def stop_reason(source: Source, at_end: bool) -> str:
    """What the stop message says ended the input (the server words the end reason)."""
    if not at_end:
        return "stopped"
    return "pipe_ended" if isinstance(source, PipeSource) else "file_ended"


async def stream(
    *, broadcast: Broadcast, source: Source, stop: asyncio.Event, out: Say | None = None
) -> int:
    """Feed the session until the input ends, Ctrl-C or the server ends it; the exit code."""
    url = ingest_url(server=broadcast.server, session=broadcast.session)
    try:
        ws = await connect(url, compression=None, open_timeout=HTTP_TIMEOUT_S)
        await ws.send(hello(broadcast.token, live=isinstance(source, PipeSource)))
    except (InvalidHandshake, InvalidURI, OSError, TimeoutError, ConnectionClosed) as exc:
        broadcast.say(f"error: the ingest WebSocket could not be opened: {exc}")
        return 1
    if isinstance(source, PipeSource):
        source.start()
    if out is not None:
        # Only now: a producer that waits for this line (a script) starts speaking into a
        # pipe that is read, not one whose first words pile up as a backlog.
        out(f"ingest {url}")
    pacer = Pacer(may_drop=isinstance(source, PipeSource))
    closed = asyncio.ensure_future(ws.wait_closed())
    closed.add_done_callback(lambda _: stop.set())
    ticker = asyncio.ensure_future(broadcast.progress(pacer))
    try:
        at_end = await pump(ws=ws, source=source, pacer=pacer, stop=stop)
        if at_end:
            await or_stop(asyncio.sleep(pacer.ahead_s() + DRAIN_S), stop)
        if ws.close_code is None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "stop", "reason": stop_reason(source, at_end)}))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), STOP_WAIT_S)
    finally:
        ticker.cancel()
        closed.cancel()
        await ws.close()
    dropped = f" ({pacer.dropped_s:.1f} s of stale backlog dropped)" if pacer.dropped_s else ""
    broadcast.say(f"live {broadcast.id}: {pacer.sent_s:.1f} s of audio sent{dropped}")
    if ws.close_code == CLOSE_ENDED:
        return 0
    broadcast.say(f"error: the ingest closed with code {ws.close_code}: {ws.close_reason}")
    return 1


@dataclass
class OnInterrupt:
    """Ctrl-C: the first stops the broadcast cleanly, a second one quits at once."""

    stop: asyncio.Event
    say: Say
    hits: int = 0

    def __call__(self) -> None:
        """The SIGINT handler."""
        self.hits += 1
        if self.hits > 1:
            raise KeyboardInterrupt
        self.say("stopping the broadcast (Ctrl-C again to quit at once)")
        self.stop.set()


async def run_live(
    *,
    server: str,
    token: str,
    request: LiveRequest,
    input_path: str,
    rate: int = SAMPLE_RATE,
    stdin: BinaryIO | None = None,
    say: Say,
    out: Say,
) -> int:
    """Open the input, start the session, stream it, stop it; the process exit code."""
    source = await open_source(input_path=input_path, rate=rate, stdin=stdin)
    broadcast = await start_session(server=server, token=token, request=request, say=say)
    targeted = int(broadcast.session.get("targeted", 0))
    out(f"live session {broadcast.id} started: {targeted} device{'' if targeted == 1 else 's'}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # No signal handlers on Windows or outside the main thread: Ctrl-C then just interrupts.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, OnInterrupt(stop, say))
    try:
        code = await stream(broadcast=broadcast, source=source, stop=stop, out=out)
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGINT)
        await broadcast.stop_on_server()
    view = await broadcast.view()
    if view is not None:
        out(
            f"live session {broadcast.id} ended: {view.get('end_reason') or 'stopped'}; "
            f"{view.get('frames_sent', 0)} frames published"
        )
    return code
