"""Silence and dead-air alarms (issue 17): a silent output where the clip has sound, dead horns.

The player hands every frame it writes (before the volume) to `SilenceWatcher.frame`, the
live receiver every frame of a live session to `SilenceWatcher.live_frame`.

Output check (clip items only; live audio has no clip to compare against): per segment,
the run of digitally silent frames is counted. Each time it reaches another SILENT_RUN_S,
a worker thread re-hashes the item's cached clips (a mismatch is a cache fault: the file
is deleted so the fetcher gets it again) and decodes that stretch of the clips; sound
there (or a bad hash) is one `output_silent` event per item. Relay parts are left out:
relay.ItemReader counts their dead air itself.

Horn check, items and live sessions (item_id "live:<session id>") alike, one
`horns_silent` event per item after HORN_FAILS failed windows of loud output in a row:
- simulated microphone: loud output is fed through the acoustic path of
  `<data dir>/sim_acoustic.json` (its level only: audio.acoustic.heard_level_db), one 1 s
  window in HORN_EVERY while the horns pass and every window once one fails;
- ALSA microphone: while the output is loud, at most one MIC_WINDOW_S recording every
  MIC_EVERY_S (MIC_RETRY_S once a window failed or was unclear), never while the
  self-test holds the microphone. Its level is compared with what the player wrote in the
  same seconds (the levels of the frames written while the window is out, with their
  monotonic times; no samples are kept, nothing once the window is judged): more than
  HORNS_DROP_DB below the level the self-test baseline's path gain (level_db) predicts is
  a failed window. Without a baseline only an absolute MIC_FLOOR_DBFS is known, a far
  weaker test (a microphone hearing street noise passes it). A microphone that cannot
  record is one log line per window, and the player carries on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from audio.errors import AudioError
from audio.pcmformat import SAMPLE_RATE
from edge_agent.capture import CaptureError, Recording, load_acoustic_path
from edge_agent.clips import sha256_of
from edge_agent.localdb import LocalDb
from edge_agent.playback import READ_BLOCK, ClipReader, Offload, Segment
from edge_agent.selftest import BASELINE_KEY
from schedules import TimelinePart

if TYPE_CHECKING:  # numpy loads with the first audio watched, not at idle
    import numpy as np

    from audio.pcm import Pcm

log = logging.getLogger(__name__)

SILENT_PEAK = 2  # int16: |sample| <= 2 is below about -84 dBFS, digital silence
# Speech has pauses of a second or two and music fades; 5 s of digital silence in a
# normalised bulletin is a fault worth a look, yet short enough to be caught mid-item.
SILENT_RUN_S = 5.0
SOURCE_SOUND_DBFS = -50.0  # the clip stretch has sound: its RMS is above this
LOUD_DBFS = -40.0  # a frame this loud should be heard by the microphone on the pole
HORNS_DROP_DB = 30.0  # the microphone this far below the output: no horn is sounding
HORN_WINDOW_S = 1.0
HORN_EVERY = 10  # while the horns pass, judge one loud second in ten (CPU on a Pi)
HORN_FAILS = 5  # failed 1 s windows of loud output in a row: 5 s of dead horns
# A real microphone costs an arecord process and a USB stream: a 2 s window every 10 min
# shows horns that died within the programme's first minutes, and a Pi barely notices it.
MIC_WINDOW_S = 2.0
MIC_EVERY_S = 600.0
MIC_RETRY_S = 30.0  # once a window failed (or the output went quiet in it): confirm soon
MIC_FLOOR_DBFS = -60.0  # no baseline: a microphone by loud horns is far above this
RING_S = 8.0  # frames kept for the window: arecord may take up to 3 s to deliver samples
REMEMBERED = 512  # item ids already reported (one event per item and code)
ENERGY_BLOCK = 4800  # levels are summed 100 ms at a time: no window-sized float copies

SILENT_VN = "Âm thanh đưa ra loa bị im lặng {s:g} giây"
DECODER_VN = SILENT_VN + " trong khi bản tin có tiếng: lỗi giải mã"
CACHE_VN = SILENT_VN + ": tệp bản tin trong bộ nhớ đệm bị hỏng, đã xoá để tải lại"
HORNS_VN = "Loa không phát ra tiếng: micro trên cột không nghe thấy gì trong khi đang phát"


class Recorder(Protocol):
    """A real microphone as the watcher uses it (edge_agent.capture.AlsaCapture)."""

    async def record(self, seconds: float) -> Recording:
        """Record `seconds`; a CaptureError when it cannot."""
        ...


class ClipStore(Protocol):
    """The clip cache as the watcher uses it (edge_agent.clips.ClipCache)."""

    def path(self, sha256: str) -> Path:
        """Where the verified clip is."""
        ...

    def forget(self, sha256: str) -> None:
        """Delete a damaged clip so it is fetched again (blocking)."""
        ...


def dbfs(samples: Pcm | np.ndarray[Any, Any], full_scale: float = 32768.0) -> float:
    """RMS level in dBFS (-inf for nothing or zeros)."""
    return level_db(energy(samples), len(samples), full_scale)


def energy(samples: Pcm | np.ndarray[Any, Any]) -> float:
    """Sum of the squared samples (float64 copies of ENERGY_BLOCK samples at most)."""
    import numpy as np  # loaded by then (samples is an array)

    total = 0.0
    for at in range(0, len(samples), ENERGY_BLOCK):
        x = samples[at : at + ENERGY_BLOCK].astype(np.float64)
        total += float(np.dot(x, x))
    return total


def level_db(energy: float, count: int, full_scale: float = 32768.0) -> float:
    """RMS level in dBFS of `count` samples whose squares sum to `energy` (-inf for none)."""
    if count <= 0 or energy <= 0:
        return -math.inf
    return 10 * math.log10(energy / count) - 20 * math.log10(full_scale)


@dataclass
class _ItemState:
    """What the watcher knows about the item on air."""

    item_id: str  # a live session's is "live:<session id>"
    parts: tuple[TimelinePart, ...]  # none for live audio
    seg: Segment | None = None
    run: int = 0  # samples of the current silent run
    run_start_s: float = 0.0  # item position where it began
    next_check: int = 0  # run length (samples) at which the source is checked next
    hashed: set[str] = field(default_factory=set)  # clips whose hash matched this play
    window: list[Pcm] = field(default_factory=list)
    window_len: int = 0
    loud_windows: int = 0
    horn_fails: int = 0


class SilenceWatcher:
    """Watches the frames the player writes and records silence events (see the module doc)."""

    def __init__(
        self,
        *,
        record: Callable[[dict[str, Any]], Awaitable[object]],
        server_time: Callable[[], float],
        clips: ClipStore,
        acoustic_file: Path | None,
        offload: Offload = asyncio.to_thread,
        mic: Recorder | None = None,
        mic_busy: Callable[[], bool] = lambda: False,
        path_gain_db: Callable[[], Awaitable[float | None]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._record = record
        self._server_time = server_time
        self.clips = clips
        self.acoustic_file = acoustic_file  # None: no simulated microphone, no horn check
        self._offload = offload
        self._state: _ItemState | None = None
        self._reported: OrderedDict[str, None] = OrderedDict()
        self._busy: set[str] = set()  # "output" / "horns": a check is running
        self._tasks: set[asyncio.Task[None]] = set()
        self.checks = {"output": 0, "horns": 0}  # source checks and horn windows judged
        self.mic = mic  # an ALSA microphone (edge_agent.silence module doc); None: none
        self._mic_busy = mic_busy  # the self-test holds the microphone
        self._path_gain_db = path_gain_db  # the self-test baseline's level_db, or None
        self._monotonic = monotonic  # the clock Recording.started is on
        # (written at, samples, their energy) of each frame since an ALSA window was asked:
        # levels, not samples, and only while a window is out (edge_agent.silence module doc).
        self._ring: deque[tuple[float, int, float]] = deque()
        self._mic_pending = False
        self._next_window = -math.inf
        self._mic_fails = 0  # failed ALSA windows in a row, across items
        self.windows: deque[float] = deque(maxlen=64)  # when the last ALSA windows were asked

    # -- the hook (on the loop, per 20 ms frame) -----------------------------------------------

    def frame(self, seg: Segment, written: int, frame: Pcm) -> None:
        """A frame of `seg` written after `written` samples (Player.on_frame)."""
        try:
            state = self._state
            if state is None or state.item_id != seg.item.item_id:
                state = self._state = _ItemState(seg.item.item_id, seg.item.parts())
            if state.seg is not seg:  # a new segment (resumed, rejoined): a new run
                state.seg, state.run = seg, 0
            position = seg.position_s + written / SAMPLE_RATE
            self._output(state, position, frame)
            if seg.volume > 0:
                self._listen(state, frame)
        except Exception:  # the writer must never stop for a watcher bug
            log.exception("silence watcher: frame of %s", seg.item.item_id)

    def live_frame(self, session_id: str, frame: Pcm) -> None:
        """A frame of live session `session_id` written to the sink (LiveReceiver.on_frame)."""
        try:
            item_id = f"live:{session_id}"
            state = self._state
            if state is None or state.item_id != item_id:
                state = self._state = _ItemState(item_id, ())
            self._listen(state, frame)
        except Exception:  # the receiver must never stop for a watcher bug
            log.exception("silence watcher: live frame of %s", session_id)

    def _listen(self, state: _ItemState, frame: Pcm) -> None:
        if self.acoustic_file is not None:
            self._horns(state, frame)
        if self.mic is not None:
            self._mic_window(state, frame)

    def _output(self, state: _ItemState, position: float, frame: Pcm) -> None:
        item_id = state.item_id
        part = _part_at(state.parts, position)
        if self._was_reported("output_silent", item_id) or part is None or part.clip is None:
            state.run = 0  # a relay part (or past the end): not ours to judge
            return
        peak = max(int(frame.max()), -int(frame.min())) if len(frame) else 0
        if peak > SILENT_PEAK:
            state.run = 0
            return
        if state.run == 0:
            state.run_start_s = position
            state.next_check = round(SILENT_RUN_S * SAMPLE_RATE)
        state.run += len(frame)
        if state.run < state.next_check:
            return
        state.next_check += round(SILENT_RUN_S * SAMPLE_RATE)
        if "output" in self._busy:
            return
        end = state.run_start_s + state.run / SAMPLE_RATE
        stretch = (max(state.run_start_s, end - SILENT_RUN_S), end)
        self._spawn("output", self._check_output(state, stretch, state.run / SAMPLE_RATE))

    def _horns(self, state: _ItemState, frame: Pcm) -> None:
        if self._was_reported("horns_silent", state.item_id):
            return
        if dbfs(frame) <= LOUD_DBFS:
            return  # quiet output says nothing about the horns
        state.window.append(frame.copy())
        state.window_len += len(frame)
        if state.window_len < HORN_WINDOW_S * SAMPLE_RATE:
            return
        frames, state.window, state.window_len = state.window, [], 0
        state.loud_windows += 1
        due = state.horn_fails > 0 or state.loud_windows % HORN_EVERY == 1
        if due and "horns" not in self._busy:  # only then one array: nine windows in ten not
            import numpy as np  # loaded by then (frames are arrays)

            self._spawn("horns", self._judge_horns(state, np.concatenate(frames)))

    def _mic_window(self, state: _ItemState, frame: Pcm) -> None:
        now = self._monotonic()
        if self._mic_pending:  # a window records: what was written in it is compared
            self._ring.append((now, len(frame), energy(frame)))
            while self._ring and self._ring[0][0] < now - RING_S:
                self._ring.popleft()
            return
        if now < self._next_window or "horns" in self._busy or self._mic_busy():
            return
        if self._was_reported("horns_silent", state.item_id) or dbfs(frame) <= LOUD_DBFS:
            return
        self.windows.append(now)
        self._mic_pending = True
        self._ring.append((now, len(frame), energy(frame)))
        self._spawn("horns", self._judge_mic(state.item_id))

    # -- checks (worker threads) ---------------------------------------------------------------

    async def _check_output(
        self, state: _ItemState, stretch: tuple[float, float], silent_s: float
    ) -> None:
        self.checks["output"] += 1
        fault, hashed = await self._offload(self._source_fault, state, stretch)
        state.hashed |= hashed
        if fault is None:
            return
        template = CACHE_VN if fault == "cache" else DECODER_VN
        await self._report(
            "output_silent", state.item_id, template.format(s=round(silent_s, 1)), silent_s
        )

    def _source_fault(
        self, state: _ItemState, stretch: tuple[float, float]
    ) -> tuple[str | None, set[str]]:
        """("cache" | "decoder" | None, the clips whose hash matched); blocking."""
        lo, hi = stretch
        hashed: set[str] = set()
        total, count = 0.0, 0  # the stretch's energy, read a block at a time (bounded memory)
        for part in state.parts:
            clip = part.clip
            start, end = max(lo, part.offset_s), min(hi, part.offset_s + part.duration_s)
            if clip is None or end <= start:
                continue
            path = self.clips.path(clip.sha256)
            try:
                if clip.sha256 not in state.hashed:
                    if sha256_of(path) != clip.sha256:
                        log.error("clip %s: damaged in the cache while on air", clip.sha256[:12])
                        self.clips.forget(clip.sha256)
                        return "cache", hashed
                    hashed.add(clip.sha256)
                skip = round((start - part.offset_s) * SAMPLE_RATE)
                reader = ClipReader([path], skip_samples=skip)
                wanted = round((end - start) * SAMPLE_RATE)
                while wanted > 0:
                    block = reader.read(min(READ_BLOCK, wanted))
                    if not len(block):
                        break
                    total += energy(block)
                    count += len(block)
                    wanted -= len(block)
            except (OSError, AudioError) as exc:  # gone or unreadable: the player reports it
                log.warning("silence check of clip %s: %s", clip.sha256[:12], exc)
        level = level_db(total, count)
        log.info("silent output of %s: its clip is at %.1f dBFS there", state.item_id, level)
        return ("decoder" if level > SOURCE_SOUND_DBFS else None), hashed

    async def _judge_horns(self, state: _ItemState, window: Pcm) -> None:
        self.checks["horns"] += 1
        assert self.acoustic_file is not None
        try:
            drop = await self._offload(_mic_drop_db, self.acoustic_file, window)
        except CaptureError as exc:
            log.warning("horn check skipped: %s", exc)
            return
        state.horn_fails = state.horn_fails + 1 if drop > HORNS_DROP_DB else 0
        if state.horn_fails >= HORN_FAILS:
            silent_s = state.horn_fails * HORN_WINDOW_S
            await self._report("horns_silent", state.item_id, HORNS_VN, silent_s)

    async def _judge_mic(self, item_id: str) -> None:
        self.checks["horns"] += 1
        verdict = "error"
        try:
            verdict = await self._mic_verdict(item_id)
        finally:
            self._mic_pending = False
            self._ring.clear()  # nothing of a finished window is kept
            sooner = verdict in ("failed", "unclear")
            self._next_window = self._monotonic() + (MIC_RETRY_S if sooner else MIC_EVERY_S)

    async def _mic_verdict(self, item_id: str) -> str:
        """The window's verdict: passed, failed, unclear (output not loud in it) or error."""
        assert self.mic is not None
        try:
            rec = await self.mic.record(MIC_WINDOW_S)
        except CaptureError as exc:
            log.warning("horn check skipped: %s", exc)
            return "error"
        end = rec.started + len(rec.samples) / SAMPLE_RATE
        written = [(n, e) for t, n, e in self._ring if rec.started <= t < end]
        played = sum(n for n, _ in written)
        out = level_db(sum(e for _, e in written), played)
        if played < len(rec.samples) / 2 or out <= LOUD_DBFS:
            return "unclear"
        heard = dbfs(rec.samples, 1.0)
        gain = None if self._path_gain_db is None else await self._path_gain_db()
        if gain is None:
            failed = heard < MIC_FLOOR_DBFS
            log.info("horns: %.1f dBFS heard, no baseline: floor %g", heard, MIC_FLOOR_DBFS)
        else:
            failed = heard < out + gain - HORNS_DROP_DB
            log.info("horns: %.1f dBFS heard, %.1f expected", heard, out + gain)
        self._mic_fails = self._mic_fails + 1 if failed else 0
        if self._mic_fails >= HORN_FAILS:
            silent_s = self._mic_fails * MIC_WINDOW_S
            await self._report("horns_silent", item_id, HORNS_VN, silent_s)
        return "failed" if failed else "passed"

    # -- bookkeeping ---------------------------------------------------------------------------

    def _was_reported(self, code: str, item_id: str) -> bool:
        return f"{code}:{item_id}" in self._reported

    async def _report(self, code: str, item_id: str, detail: str, silent_s: float) -> None:
        key = f"{code}:{item_id}"
        if key in self._reported:
            return
        self._reported[key] = None
        while len(self._reported) > REMEMBERED:
            self._reported.popitem(last=False)
        log.error("%s: %s (%s)", item_id, code, detail)
        event = {
            "kind": "silence",
            "at": self._server_time(),
            "code": code,
            "detail": detail[:500],
            "item_id": item_id[:200],
            "silent_s": round(min(silent_s, 1e7), 1),
        }
        await self._record(event)

    def _spawn(self, kind: str, coro: Awaitable[None]) -> None:
        self._busy.add(kind)
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._busy.discard(kind)
            if not t.cancelled() and t.exception() is not None:
                log.error("silence check failed", exc_info=t.exception())

        task.add_done_callback(done)

    async def drain(self) -> None:
        """Wait for the checks running now (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        """Cancel the checks still running."""
        for task in list(self._tasks):
            task.cancel()
        self._mic_pending = False
        self._ring.clear()


def _part_at(parts: tuple[TimelinePart, ...], position: float) -> TimelinePart | None:
    for part in parts:
        if part.offset_s <= position < part.offset_s + part.duration_s:
            return part
    return None


def _mic_drop_db(acoustic_file: Path, window: Pcm) -> float:
    """How far (dB) below the window's level the simulated microphone hears it; blocking."""
    import numpy as np  # loaded by then (window is an array)

    from audio.acoustic import heard_level_db  # the sim's arithmetic: loaded with a check

    path = load_acoustic_path(acoustic_file)
    played = window * np.float32(1 / 32768)  # float32, full scale 1.0: one copy
    out, mic = dbfs(window), heard_level_db(path, played, SAMPLE_RATE)
    return out - mic if mic > -math.inf else math.inf


async def baseline_level_db(db: LocalDb) -> float | None:
    """The path gain (dB) of the self-test baseline in the local db, or None."""
    raw = await asyncio.to_thread(db.meta, BASELINE_KEY)
    if raw is None:
        return None
    from audio.selftest import Figures  # the analysis module: loaded with a baseline to read

    try:
        return Figures.from_dict(json.loads(raw)).level_db
    except (ValueError, RecursionError) as exc:
        log.warning("horn check: the self-test baseline is unreadable (%s)", exc)
        return None
