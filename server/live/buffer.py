"""The PCM queue between a live source and the frame publisher (48 kHz mono s16)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from audio.pcm import SAMPLE_RATE, Pcm, silence


class PcmQueue:
    """Samples waiting to be framed; the publisher takes each frame on time or plays silence.

    A source that delivers bursts (a browser over a WebSocket) refills `prefill_s` before
    audio flows again after running dry, so one late packet does not chop every frame after
    it; a source faster than real time (a file, a relay's burst) waits for room instead.

    A live source (`live=True`: a microphone, a line-in) is real time: its audio must not
    wait in here. The age of the audio taken first (`lead_s`, mostly the prefill) is folded
    into the frames' capture stamps, so the playout delay includes it instead of adding to
    it; from then on, audio older than `lead_s + stale_s` when taken (a backlog after a
    hiccup of the source, the sender or this server) is dropped, oldest first, down to
    `lead_s`, so latency returns to what the stamps say (`stale_samples` counts it). The age,
    not the size, is compared: a sender's 100 ms messages make the queue swing by 100 ms
    while the age of its oldest sample stays put. Not in the first `probe_s` of audio: a
    sender may still be finding out whether its source is live (`loa-server live` says
    "paced" for a pipe fed faster than real time).

    A live source's publisher starts its frame timeline when the queue first holds the
    prefill (`wait_first_audio`), so the first take finds audio exactly that old.

    The prefill of a live queue is part of every frame's latency, so it is only as large as
    the source needs (`chunk_margin_s`): until audio first flows, the largest message seen
    plus that margin, never more than `prefill_s`. The service's margin is one frame (a take
    must find a whole frame between two messages): with 40 ms frames a sender of 20 ms
    messages starts after 60 ms, one of 100 ms messages at the cap (measured from outside:
    at a 200 ms playout delay, a fixed 67 ms prefill left the devices too little margin).
    """

    def __init__(
        self,
        *,
        max_s: float = 2.0,
        prefill_s: float = 0.0,
        live: bool = False,
        stale_s: float = 0.02,
        probe_s: float = 1.0,
        chunk_margin_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_samples = round(max_s * SAMPLE_RATE)
        self.prefill = round(prefill_s * SAMPLE_RATE)
        self._max_prefill = self.prefill
        self._chunk_margin = None if chunk_margin_s is None else round(chunk_margin_s * SAMPLE_RATE)
        self._largest_put = 0
        self.live = live
        self.stale = round(stale_s * SAMPLE_RATE)
        self.probe = round(probe_s * SAMPLE_RATE)
        self.taken = 0
        self._clock = clock
        self.last_put: float | None = None  # when the newest sample arrived
        self.flow_starts = 0  # times audio started flowing (first, after running dry)
        self.stale_samples = 0
        self.stale_drops = 0
        self.lead_s: float | None = None  # age of the first audio taken (live queues)
        self._chunks: deque[Pcm] = deque()
        self._size = 0
        self._flowing = self.prefill == 0
        self._room = asyncio.Event()
        self._room.set()
        self._first_audio = asyncio.Event()  # a live queue first holds its prefill
        self.finished = False  # the source has nothing more to give
        self.overflow_samples = 0
        self.underruns = 0

    @property
    def size(self) -> int:
        """Samples waiting."""
        return self._size

    def put(self, pcm: Pcm) -> None:
        """Append samples; beyond `max_s` the oldest are dropped (a live source cannot wait)."""
        if not len(pcm):
            return
        if self._chunk_margin is not None and not self.flow_starts:
            self._largest_put = max(self._largest_put, len(pcm))
            self.prefill = min(self._max_prefill, self._largest_put + self._chunk_margin)
        self._chunks.append(pcm)
        self._size += len(pcm)
        self.last_put = self._clock()
        excess = self._size - self.max_samples
        if excess > 0:
            self.overflow_samples += excess
            self._discard(excess)
        if self._size >= self.max_samples // 2:
            self._room.clear()
        if not self.flow_starts and self._size >= self.prefill:
            self._first_audio.set()

    async def wait_room(self) -> None:
        """Wait until the queue is less than half full (back-pressure for fast sources)."""
        await self._room.wait()

    async def wait_first_audio(self) -> None:
        """Wait until the queue first holds its prefill (or its source ended)."""
        await self._first_audio.wait()

    def finish(self) -> None:
        """The source ended: what is queued is the last audio."""
        self.finished = True
        self._first_audio.set()

    @property
    def drained(self) -> bool:
        """The source ended and everything was taken."""
        return self.finished and self._size == 0

    def age_s(self, now: float) -> float:
        """How long ago the oldest queued sample was captured (the newest arrived fresh)."""
        if self.last_put is None:
            return self.prefill / SAMPLE_RATE
        return max(0.0, now - self.last_put) + self._size / SAMPLE_RATE

    def take(self, n: int, *, late_s: float = 0.0) -> Pcm | None:
        """Exactly `n` samples, or None (play silence) while empty or refilling.

        `late_s`: how long after its due instant this take runs (the taker's own lateness
        is not the audio's age).
        """
        restart = False
        if not self._flowing:
            if not self.finished and not self._ready_to_flow(n, late_s):
                return None
            self._flowing = True
            self.flow_starts += 1
            restart = True
        if self.live and self._size >= n:
            self._drop_stale(n, late_s, restart=restart)
        if self._size < n:
            if not self.finished:
                self.underruns += 1
                self._flowing = self.prefill == 0
                return None
            if self._size == 0:
                return None
            tail = self._pop(self._size)
            return np.concatenate([tail, silence(n - len(tail))])
        self.taken += n
        return self._pop(n)

    def _ready_to_flow(self, n: int, late_s: float) -> bool:
        """Refilled: the prefill at first; for a live queue after that, audio as old as the lead.

        So latency after running dry (a stall of the source) is the lead again, not the
        lead plus wherever the refill happened to stop.
        """
        if self._size < n:
            return False
        if self.live and self.lead_s is not None:
            return self.age_s(self._clock()) - late_s >= self.lead_s
        return self._size >= self.prefill

    def _drop_stale(self, n: int, late_s: float, *, restart: bool) -> None:
        """Measure the lead on the first take; later, drop what is older than it allows.

        Flowing, up to `stale_s` beyond the lead is left alone (a drop is a click); when
        audio starts flowing again after running dry, the excess goes whole (it follows
        silence anyway), so the stamps are right again to the sample.
        """
        age = self.age_s(self._clock()) - late_s
        if self.lead_s is None:
            self.lead_s = max(0.0, age)
            return
        excess = round((age - self.lead_s) * SAMPLE_RATE)
        if self.taken < self.probe or excess <= (0 if restart else self.stale):
            return
        excess = min(excess, self._size - n)  # the frame due now is always played
        if excess > 0:
            self.stale_samples += excess
            self.stale_drops += 1
            self._discard(excess)

    def _pop(self, n: int) -> Pcm:
        parts: list[Pcm] = []
        need = n
        while need:
            head = self._chunks[0]
            if len(head) <= need:
                parts.append(self._chunks.popleft())
                need -= len(head)
            else:
                parts.append(head[:need])
                self._chunks[0] = head[need:]
                need = 0
        self._size -= n
        if self._size < self.max_samples // 2:
            self._room.set()
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _discard(self, n: int) -> None:
        self._pop(n)
