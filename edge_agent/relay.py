"""Scheduled relay items: the frames of relay sessions, and a reader that plays them in an item.

The server publishes a relay part as live frames on `live_topic(zone, part.session_id)`
without any live join: the device knows the sessions from its schedule. `RelayFrames`
keeps the decoded frames of the sessions the held schedule relays, by capture time, for a
bounded while. `ItemReader` reads an item's clips and relays as one 48 kHz stream (the
`ClipReader` interface): relay position p is heard at server time T, so its audio is the
frame captured at T - playout delay. No frames: silence, then after `fallback_after_s`
(counted in relay position) the fallback clip from its beginning, looped, until frames
come again. It records what each sample was, for the proof of play.
"""

from __future__ import annotations

import bisect
import importlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from audio.pcmformat import FRAME_SAMPLES, SAMPLE_RATE
from edge_agent.playback import ClipReader
from protocol import TopicError, parse_live_topic
from protocol.liveframe import FrameError, decode_frame
from schedules import PlaybackItem
from schedules.model import RelayPart

if TYPE_CHECKING:  # numpy loads with the first relay frame or item read, not at idle
    import numpy as np

    from audio.pcm import Pcm

log = logging.getLogger(__name__)

MAX_FRAMES = 3000  # 60 s of 20 ms frames per session (~5.8 MB decoded)
WINDOW_MARGIN_S = 10.0  # frames this far outside a relay's capture window are absurd
KEEP_AFTER_WINDOW_S = 60.0  # a finished relay's frames go once others are this much newer
MAX_CONCEALED = 5  # a gap this short is concealed (audio.opus), not left silent
WAIT_CAP_S = 1.0  # longest read() waits for frames that cannot have arrived yet
WAIT_MARGIN_S = 0.1  # and never closer than this to the instant they are heard
ARRIVAL_S = 0.03  # a frame cannot be here before its capture time + this (its 20 ms + link)
Kind = Literal["relayed", "fallback", "silent"]


def _tick(seconds: float) -> int:
    """A server time as a sample index at 48 kHz."""
    return round(seconds * SAMPLE_RATE)


def _tick_us(capture_us: int) -> int:
    return (capture_us * SAMPLE_RATE // 1000 + 500) // 1000


def relay_windows(items: Iterable[PlaybackItem]) -> dict[str, tuple[float, float]]:
    """Session id -> (first, last) plausible capture time (server s) of each relay part."""
    out: dict[str, tuple[float, float]] = {}
    for item in items:
        start = item.start.timestamp()
        for part in item.parts():
            if part.relay is None:
                continue
            delay = part.relay.playout_delay_ms / 1000
            first = start + part.offset_s - delay - WINDOW_MARGIN_S
            last = start + part.offset_s + part.duration_s - delay + WINDOW_MARGIN_S
            out[part.relay.session_id] = (first, last)
    return out


def load_opus() -> None:
    """Import the Opus decoder now (blocking), not with the first frame on the event loop."""
    importlib.import_module("audio.opus")


@dataclass
class _Session:
    first: float
    last: float
    frames: dict[int, tuple[Pcm, bool]] = field(default_factory=dict)  # tick -> (pcm, concealed)
    ticks: list[int] = field(default_factory=list)  # sorted keys of frames
    decoder: Any = None
    last_seq: int | None = None
    last_tick: int | None = None
    ended: bool = False


class RelayFrames:
    """Decoded frames of the relay sessions the held schedule names (thread-safe)."""

    def __init__(self, *, max_frames: int = MAX_FRAMES) -> None:
        self.max_frames = max_frames
        self.rejected: dict[str, int] = {}
        self.stored = 0
        self.concealed = 0
        self.duplicates = 0
        self._sessions: dict[str, _Session] = {}
        self._cond = threading.Condition()

    # -- schedule ---------------------------------------------------------------------------

    def expect(self, windows: Mapping[str, tuple[float, float]]) -> None:
        """Accept frames only for these sessions (from relay_windows); forget the others."""
        with self._cond:
            for session_id in list(self._sessions):
                if session_id not in windows:
                    del self._sessions[session_id]
            for session_id, (first, last) in windows.items():
                held = self._sessions.get(session_id)
                if held is None:
                    self._sessions[session_id] = _Session(first, last)
                else:
                    held.first, held.last = first, last

    def expected(self) -> frozenset[str]:
        """Session ids whose frames are accepted."""
        with self._cond:
            return frozenset(self._sessions)

    # -- arrival ----------------------------------------------------------------------------

    def offer_topic(self, topic: str, payload: bytes) -> bool:
        """Take a frame if `topic` is a scheduled relay's live topic; False to pass it on."""
        # No relay held (the usual case, every joined live frame): no parse, no lock. A read
        # of a dict's size is atomic; a session added this instant gets the next frame.
        if not self._sessions or "/live/" not in topic:
            return False
        try:
            _zone, session_id = parse_live_topic(topic)
        except TopicError:
            return False
        with self._cond:
            if session_id not in self._sessions:
                return False  # a joined live session's frames, or not ours at all
        self.offer(session_id, payload)
        return True

    def offer(self, session_id: str, payload: bytes) -> bool:
        """Decode and keep one frame of a relay session; False (counted) if refused."""
        try:
            frame = decode_frame(payload)
        except FrameError as exc:
            self._count("bad_frame")
            log.debug("relay %s: dropped a frame: %s", session_id[:40], exc)
            return False
        with self._cond:
            s = self._sessions.get(session_id)
            if s is None:
                self._count("unknown_session")
                return False
            capture = frame.capture_time
            if not s.first <= capture <= s.last:
                self._count("outside_window")
                return False
            tick = _tick_us(frame.capture_us)
            held = s.frames.get(tick)
            if held is not None and not held[1]:
                self.duplicates += 1  # the same session reaches us through two zones
                return False
            if s.decoder is None:
                s.decoder = importlib.import_module("audio.opus").OpusDecoder()
            self._conceal_gap(s, frame.seq, tick)
            corrupt = s.decoder.corrupt
            pcm = s.decoder.decode(frame.payload)
            if s.decoder.corrupt != corrupt:
                self._count("bad_audio")
                return False
            self._store(s, tick, pcm, concealed=False)
            if s.last_seq is None or frame.seq > s.last_seq:
                s.last_seq, s.last_tick = frame.seq, tick
            s.ended = s.ended or frame.last
            self.stored += 1
            self._forget_finished(capture)
            self._cond.notify_all()
        return True

    def _conceal_gap(self, s: _Session, seq: int, tick: int) -> None:
        """A few frames lost just before this one: fill them the way a live receiver does."""
        if s.last_seq is None or s.last_tick is None:
            return
        gap = seq - s.last_seq - 1
        if not 0 < gap <= MAX_CONCEALED or tick != s.last_tick + (gap + 1) * FRAME_SAMPLES:
            return
        for n in range(1, gap + 1):
            filler = s.last_tick + n * FRAME_SAMPLES
            pcm = s.decoder.decode(None)
            if filler not in s.frames:
                self._store(s, filler, pcm, concealed=True)
                self.concealed += 1

    def _store(self, s: _Session, tick: int, pcm: Pcm, *, concealed: bool) -> None:
        if tick not in s.frames:
            bisect.insort(s.ticks, tick)
        s.frames[tick] = (pcm, concealed)
        while len(s.ticks) > self.max_frames:  # memory is bounded whatever the link does
            del s.frames[s.ticks.pop(0)]

    def _forget_finished(self, now_capture: float) -> None:
        for s in self._sessions.values():
            if s.ticks and s.last + KEEP_AFTER_WINDOW_S < now_capture:
                s.frames.clear()
                s.ticks.clear()

    def _count(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    # -- playout ----------------------------------------------------------------------------

    def held(self, session_id: str) -> int:
        """How many frames of a session are held (tests, diagnostics)."""
        with self._cond:
            s = self._sessions.get(session_id)
            return 0 if s is None else len(s.ticks)

    def take(self, session_id: str, start: int, n: int) -> tuple[Pcm, np.ndarray]:
        """Samples captured at ticks [start, start + n) and a mask of those that arrived."""
        import numpy as np  # loaded by then: a relay item is being read

        from audio.pcm import silence

        out = silence(n)
        mask = np.zeros(n, dtype=bool)
        with self._cond:
            s = self._sessions.get(session_id)
            if s is None:
                return out, mask
            i = max(0, bisect.bisect_right(s.ticks, start) - 1)
            while i < len(s.ticks) and s.ticks[i] < start + n:
                tick = s.ticks[i]
                lo, hi = max(tick, start), min(tick + FRAME_SAMPLES, start + n)
                if lo < hi:
                    pcm = s.frames[tick][0]
                    out[lo - start : hi - start] = pcm[lo - tick : hi - tick]
                    mask[lo - start : hi - start] = True
                i += 1
        return out, mask

    def wait(self, session_id: str, until: int, timeout: float) -> None:
        """Block (at most `timeout` s) until a frame reaching tick `until` has arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                s = self._sessions.get(session_id)
                if s is None or s.ended or (s.ticks and s.ticks[-1] + FRAME_SAMPLES >= until):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def release(self, session_id: str, before: int) -> None:
        """Frames captured wholly before tick `before` were played: let them go."""
        with self._cond:
            s = self._sessions.get(session_id)
            if s is None:
                return
            cut = bisect.bisect_right(s.ticks, before - FRAME_SAMPLES)
            for tick in s.ticks[:cut]:
                del s.frames[tick]
            del s.ticks[:cut]


@dataclass
class RelayTally:
    """What an item's relay parts sounded like, in samples."""

    relayed: int = 0
    fallback: int = 0
    silent: int = 0
    fallback_missing: set[str] = field(default_factory=set)

    def add(self, other: RelayTally) -> None:
        """Sum another segment's tally into this one."""
        self.relayed += other.relayed
        self.fallback += other.fallback
        self.silent += other.silent
        self.fallback_missing |= other.fallback_missing

    @property
    def mode(self) -> Literal["relayed", "fallback", "mixed"]:
        """Both heard: mixed; relayed frames only: relayed; otherwise fallback."""
        if self.relayed and self.fallback:
            return "mixed"
        return "relayed" if self.relayed else "fallback"

    def seconds(self, kind: Kind) -> float:
        """Seconds of one kind, to the millisecond."""
        samples = {"relayed": self.relayed, "fallback": self.fallback, "silent": self.silent}
        return round(samples[kind] / SAMPLE_RATE, 3)

    def summary(self) -> str:
        """A short human line for the proof of play's reason ("" when nothing needs saying)."""
        notes = []
        if self.silent > SAMPLE_RATE:
            notes.append(
                f"relay: {self.seconds('relayed'):.1f} s relayed, "
                f"{self.seconds('fallback'):.1f} s fallback, {self.seconds('silent'):.1f} s silent"
            )
        for sha in sorted(self.fallback_missing):
            notes.append(f"relay fallback clip {sha} is not in the cache: silence instead")
        return "; ".join(notes)


@dataclass
class _RelayState:
    missing: int = 0  # samples in a row without frames, in relay position
    fallback: ClipReader | None = None


class ItemReader:
    """An item's clips and relays back to back, as ClipReader reads clips (blocking).

    `heard_at` is the server time the first sample read (item position `skip_samples`)
    is heard; relay audio follows that timeline, so every device plays the same frame at
    the same instant. `server_now` (optional) lets read() wait briefly for frames that
    cannot have arrived yet because they are read ahead of a short playout delay.
    """

    def __init__(
        self,
        item: PlaybackItem,
        *,
        frames: RelayFrames,
        clip_path: Callable[[str], Path],
        clip_ready: Callable[[str], bool],
        heard_at: float,
        skip_samples: int = 0,
        server_now: Callable[[], float] | None = None,
    ) -> None:
        self._parts = [
            (round(p.offset_s * SAMPLE_RATE), round((p.offset_s + p.duration_s) * SAMPLE_RATE), p)
            for p in item.parts()
        ]
        self._total = self._parts[-1][1] if self._parts else 0
        self._frames = frames
        self._path = clip_path
        self._ready = clip_ready
        self._first = self._pos = min(max(0, skip_samples), self._total)
        self._heard0 = _tick(heard_at)
        self._server_now = server_now
        self._clip: tuple[int, ClipReader] | None = None  # (part index, reader)
        self._relay: dict[int, _RelayState] = {}
        self._runs: list[list[Any]] = []  # [start, end, kind], item samples, merged
        self._fallback_missing: set[str] = set()

    @property
    def position(self) -> int:
        """The next item sample read() returns."""
        return self._pos

    def read(self, n_samples: int) -> Pcm:
        """Up to n_samples (fewer only at the item's end)."""
        import numpy as np  # loads with the first read (in a worker thread), not at idle

        from audio.pcm import silence

        out: list[Pcm] = []
        want = n_samples
        while want > 0 and self._pos < self._total:
            index = self._part_at(self._pos)
            start, end, part = self._parts[index]
            m = min(want, end - self._pos)
            if part.relay is not None:
                pcm = self._read_relay(index, part.relay, self._pos - start, m)
            else:
                pcm = self._read_clip(index, part.clip.sha256 if part.clip else "", start, m)
            out.append(pcm)
            self._pos += m
            want -= m
        return np.concatenate(out) if out else silence(0)

    def tally(self, played_samples: int | None = None) -> RelayTally:
        """The relay samples among the first `played_samples` read (default: all read)."""
        upto = self._pos if played_samples is None else self._first + played_samples
        result = RelayTally(fallback_missing=set(self._fallback_missing))
        for start, end, kind in self._runs:
            n = max(0, min(end, upto) - start)
            setattr(result, kind, getattr(result, kind) + n)
        return result

    def _part_at(self, pos: int) -> int:
        for index, (start, end, _part) in enumerate(self._parts):
            if start <= pos < end:
                return index
        raise IndexError(pos)

    def _read_clip(self, index: int, sha: str, start: int, m: int) -> Pcm:
        import numpy as np  # loaded by then: a relay item is being read

        from audio.pcm import silence

        if self._clip is None or self._clip[0] != index:
            self._clip = (index, ClipReader([self._path(sha)], skip_samples=self._pos - start))
        pcm = self._clip[1].read(m)
        if len(pcm) < m:  # shorter than its planned length: what follows stays on time
            pcm = np.concatenate([pcm, silence(m - len(pcm))])
        return pcm

    def _read_relay(self, index: int, relay: RelayPart, position: int, m: int) -> Pcm:
        import numpy as np  # loaded by then: a relay item is being read

        capture = self._heard0 + (self._pos - self._first) - relay.playout_delay_ms * 48
        session = relay.session_id
        pcm, mask = self._frames.take(session, capture, m)
        if not mask.all() and self._wait(session, capture, m):
            pcm, mask = self._frames.take(session, capture, m)
        self._frames.release(session, capture)
        state = self._relay.setdefault(index, _RelayState())
        after = round(relay.fallback_after_s * SAMPLE_RATE)
        edges = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
        bounds = [0, *edges.tolist(), m]
        for lo, hi in itertools.pairwise(bounds):
            if mask[lo]:
                state.missing, state.fallback = 0, None
                self._mark(lo, hi, "relayed")
                continue
            quiet = min(hi - lo, max(0, after - state.missing))
            state.missing += hi - lo
            self._mark(lo, lo + quiet, "silent")
            if lo + quiet < hi:
                pcm[lo + quiet : hi] = self._fallback(state, relay, lo + quiet, hi)
        return pcm

    def _wait(self, session: str, capture: int, m: int) -> bool:
        """Wait for frames read ahead of a short delay; True if it waited."""
        if self._server_now is None:
            return False
        now = self._server_now()
        if (capture + m) / SAMPLE_RATE + ARRIVAL_S <= now:
            return False  # they could be here by now: missing means missing
        heard = (self._heard0 + (self._pos - self._first)) / SAMPLE_RATE
        timeout = min(heard - WAIT_MARGIN_S - now, WAIT_CAP_S)
        if timeout <= 0:
            return False
        self._frames.wait(session, capture + m, timeout)
        return True

    def _fallback(self, state: _RelayState, relay: RelayPart, lo: int, hi: int) -> Pcm:
        import numpy as np  # loaded by then: a relay item is being read

        from audio.pcm import silence

        sha = relay.fallback.sha256
        if not self._ready(sha):
            self._fallback_missing.add(sha)
            self._mark(lo, hi, "silent")
            return silence(hi - lo)
        parts: list[Pcm] = []
        need = hi - lo
        fresh = False
        while need > 0:
            if state.fallback is None:
                state.fallback, fresh = ClipReader([self._path(sha)]), True
            chunk = state.fallback.read(need)
            if not len(chunk):
                if fresh:  # the clip decodes to nothing: nothing to loop
                    parts.append(silence(need))
                    break
                state.fallback = None  # loop from its beginning
                continue
            fresh = False
            parts.append(chunk)
            need -= len(chunk)
        self._mark(lo, hi, "fallback")
        return np.concatenate(parts)

    def _mark(self, lo: int, hi: int, kind: Kind) -> None:
        if hi <= lo:
            return
        start, end = self._pos + lo, self._pos + hi
        if self._runs and self._runs[-1][2] == kind and self._runs[-1][1] == start:
            self._runs[-1][1] = end
        else:
            self._runs.append([start, end, kind])
