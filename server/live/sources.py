"""Where live audio comes from: a clip file, a relayed stream (PyAV), or pushed PCM/Opus."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import av.error
import httpx
import numpy as np

from audio.decode import iter_pcm_frames
from audio.errors import AudioError
from audio.pcm import SAMPLE_RATE, Pcm, clip_to_int16, from_bytes, silence
from server.live.buffer import PcmQueue
from server.live.fetch import Fetcher, StreamFailed
from server.live.urlguard import (
    AddressRefused,
    AddressUnusable,
    AllowList,
    Resolver,
    system_resolve,
)

log = logging.getLogger(__name__)

URL_SCHEMES = ("http://", "https://")
OPEN_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 5.0
REFUSED = "this address is not allowed for relays"
_FAILURES = (
    av.error.FFmpegError, OSError, ValueError, EOFError, httpx.HTTPError, httpx.StreamError,
    AddressRefused, AddressUnusable, StreamFailed,
)  # fmt: skip


class SourceError(Exception):
    """A live source that cannot be used; the message is for the operator."""


class SourceStatus:
    """What a source is doing, for GET /api/v1/live."""

    def __init__(self) -> None:
        self.state = "starting"
        self.error: str | None = None
        self.reconnects = 0

    def as_dict(self, queue: PcmQueue | None = None) -> dict[str, Any]:
        """A JSON-able view; with the session's queue, also the stale audio it dropped."""
        out: dict[str, Any] = {
            "state": self.state, "error": self.error, "reconnects": self.reconnects,
        }  # fmt: skip
        if queue is not None:
            out["stale_dropped_s"] = round(queue.stale_samples / SAMPLE_RATE, 3)
            out["stale_drops"] = queue.stale_drops
        return out


async def feed_file(path: Path, queue: PcmQueue, status: SourceStatus) -> None:
    """Decode a clip into the queue, ahead of real time only as far as the queue allows."""
    frames = iter_pcm_frames(path)
    status.state = "playing"
    try:
        while True:
            await queue.wait_room()
            block = await asyncio.to_thread(_next_block, frames, 25)
            if not block:
                break
            for pcm in block:
                queue.put(pcm)
    except AudioError as exc:
        status.state, status.error = "failed", exc.message
    else:
        status.state = "finished"
    finally:
        queue.finish()


def _next_block(frames: Iterator[Pcm], count: int) -> list[Pcm]:
    """Up to `count` frames (half a second) per thread hop."""
    out: list[Pcm] = []
    for pcm in frames:
        out.append(pcm)
        if len(out) >= count:
            break
    return out


def check_url(url: str) -> str:
    """Refuse what is plainly not an http(s) stream address (addresses are checked later)."""
    if not url.lower().startswith(URL_SCHEMES) or len(url) > 2000:
        raise SourceError(
            "The relay address must be an http(s) URL of an audio stream (Icecast, HLS)."
        )
    return url


def _open(url: str, fetcher: Fetcher) -> Any:
    """Open a stream through our checked fetcher: FFmpeg never connects by itself."""
    stream = fetcher.open(url)
    # A playlist's URLs come back through io_open (checked too); HLS keep-alive would
    # reuse FFmpeg's own HTTP context, which a Python file object does not have.
    return av.open(stream, io_open=fetcher.io_open, container_options={"http_persistent": "0"})


def probe_url(
    url: str, *, allow: AllowList, timeout_s: float, resolve: Resolver = system_resolve
) -> None:
    """Open the stream and check it has audio; SourceError if it cannot be, TimeoutError."""
    fetcher = Fetcher(
        allow=allow, resolve=resolve, connect_s=timeout_s, read_s=timeout_s,
        deadline=time.monotonic() + timeout_s,
    )  # fmt: skip
    try:
        with _open(url, fetcher) as container:
            has_audio = bool(container.streams.audio)
    except _FAILURES as exc:
        log.warning("live relay %s could not be opened: %r", url[:200], exc)
        if _is_timeout(exc):
            raise TimeoutError(str(exc)) from None
        raise SourceError(f"The relay address could not be played{_reason(exc)}.") from None
    finally:
        fetcher.close()
    if not has_audio:
        log.warning("live relay %s carries no audio stream", url[:200])
        raise SourceError("The relay address could not be played.")


def _is_timeout(exc: BaseException) -> bool:
    # PyAV's timeout interrupts FFmpeg, which reports it as an "immediate exit".
    if isinstance(exc, TimeoutError | httpx.TimeoutException | av.error.ExitError):
        return True
    return isinstance(exc, av.error.FFmpegError) and any(
        word in str(exc).lower() for word in ("timed out", "timeout", "immediate exit")
    )


def _reason(exc: BaseException) -> str:
    """The only reason an operator is told: never what answered at the address."""
    return f": {REFUSED}" if isinstance(exc, AddressRefused) else ""


class StreamReader:
    """Blocking reader of one stream connection: yields resampled 48 kHz mono chunks."""

    def __init__(self, url: str, fetcher: Fetcher) -> None:
        self.url = url
        self.fetcher = fetcher
        self._container: Any = None
        self._iter: Iterator[Pcm] | None = None
        # A relay stopped while a worker thread decodes (its task cancelled mid-read) is
        # closed from another thread: freeing FFmpeg's context under the decoder crashed the
        # whole server (a segfault). The lock lets close() wait for the chunk in flight.
        self._lock = threading.Lock()
        self._closing = False

    def next_chunk(self) -> Pcm | None:
        """The next chunk, or None at the end of the stream (raises on a failure)."""
        with self._lock:
            if self._closing:
                return None
            if self._iter is None:
                self.fetcher.deadline = time.monotonic() + OPEN_TIMEOUT_S + READ_TIMEOUT_S
                self._container = _open(self.url, self.fetcher)
                self.fetcher.deadline = 0.0 if self._closing else None
                if not self._container.streams.audio:
                    raise SourceError("could not be played")  # never what answered
                self._iter = self._decode()
            return next(self._iter, None)

    def _decode(self) -> Iterator[Pcm]:
        stream = self._container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        for frame in self._container.decode(stream):
            for out in resampler.resample(frame):
                yield out.to_ndarray().reshape(-1).astype(np.int16)

    def close(self) -> None:
        """Release the connection, once a chunk being decoded in another thread is done."""
        self._closing = True
        self.fetcher.deadline = 0.0  # the decoder's next read fails at once instead of waiting
        with self._lock:
            if self._container is not None:
                self._container.close()
                self._container = None
            self.fetcher.close()


async def feed_url(
    url: str,
    queue: PcmQueue,
    status: SourceStatus,
    *,
    allow: AllowList,
    resolve: Resolver = system_resolve,
    max_backoff_s: float = 30.0,
) -> None:
    """Relay a stream forever; on a drop, reconnect with backoff (the publisher sends silence)."""
    backoff = 1.0
    while True:
        fetcher = Fetcher(
            allow=allow, resolve=resolve, connect_s=OPEN_TIMEOUT_S, read_s=READ_TIMEOUT_S
        )
        reader = StreamReader(url, fetcher)
        status.state = "connecting"
        try:
            while True:
                await queue.wait_room()
                chunk = await asyncio.to_thread(reader.next_chunk)
                if chunk is None:
                    raise SourceError("the stream ended")
                if status.state != "playing":
                    status.state, status.error, backoff = "playing", None, 1.0
                queue.put(chunk)
        except (SourceError, *_FAILURES) as exc:
            # The status is shown to operators: it never says what answered at the address.
            status.state = "reconnecting"
            status.error = (
                str(exc) if isinstance(exc, SourceError) else f"could not be played{_reason(exc)}"
            )
            status.reconnects += 1
            log.warning("live relay %s: %r; reconnecting in %.0f s", url[:200], exc, backoff)
        finally:
            await asyncio.to_thread(reader.close)
        await asyncio.sleep(random.uniform(backoff / 2, backoff))
        backoff = min(backoff * 2, max_backoff_s)


class IngestError(Exception):
    """Pushed audio (the microphone WebSocket) that cannot be used; message for the operator."""


class PushDecoder:
    """Turns pushed messages (s16le PCM at a declared rate, or Opus packets) into 48 kHz PCM."""

    MAX_BAD_PACKETS = 25  # half a second of undecodable Opus in a row: it is not Opus

    def __init__(self, *, fmt: str = "pcm_s16le", sample_rate: int = SAMPLE_RATE) -> None:
        if fmt not in ("pcm_s16le", "opus"):
            raise IngestError(f"Unknown audio format {fmt[:40]!r}: send 'pcm_s16le' or 'opus'.")
        if fmt == "pcm_s16le" and not 8000 <= sample_rate <= 96000:
            raise IngestError(
                f"A sample rate of {sample_rate} Hz is not supported: use 8000 to 96000 Hz."
            )
        self.fmt = fmt
        self.rate = sample_rate if fmt == "pcm_s16le" else SAMPLE_RATE
        self._resampler: Any = None
        if self.rate != SAMPLE_RATE:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._opus: Any = None
        self._bad = 0
        self._pts = 0

    def decode(self, data: bytes) -> Pcm:
        """Samples for one message (IngestError when the stream is plainly not audio)."""
        if self.fmt == "opus":
            return self._decode_opus(data)
        if len(data) % 2:
            raise IngestError("PCM must be whole 16-bit samples (an even number of bytes).")
        pcm = from_bytes(data)
        return pcm if self._resampler is None else self._resample(pcm)

    def _resample(self, pcm: Pcm) -> Pcm:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += len(pcm)
        outs = self._resampler.resample(frame)
        parts = [o.to_ndarray().reshape(-1).astype(np.int16) for o in outs]
        return np.concatenate(parts) if parts else silence(0)

    def _decode_opus(self, packet: bytes) -> Pcm:
        if self._opus is None:
            codec = av.CodecContext.create("libopus", "r")
            codec.sample_rate = SAMPLE_RATE
            codec.layout = "mono"
            codec.open()
            self._opus = codec
        try:
            frames = self._opus.decode(av.Packet(packet))
        except _FAILURES:
            frames = []
            self._opus = None  # FFmpeg may keep an error state: start afresh
        parts = [_mono(f.to_ndarray()) for f in frames]
        if not parts:
            self._bad += 1
            if self._bad >= self.MAX_BAD_PACKETS:
                raise IngestError("The audio is not Opus: no packet could be decoded.")
            return silence(0)
        self._bad = 0
        return np.concatenate(parts)


def _mono(data: Any) -> Pcm:
    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        arr = arr * 32768.0
    mono = arr.reshape(-1) if arr.shape[0] == 1 else arr.mean(axis=0)
    return clip_to_int16(np.asarray(mono, dtype=np.float64))
