"""The player: plays the held schedule on time, arbitrates priorities, drives the amplifier.

It keeps a timeline on the local monotonic clock. Two kinds of instants happen on it: an
item's planned start (server time converted through the clock offset) and the end of
the segment playing now. Each is decided `lead_s` before it happens, in time order, with
`schedules.arbiter` (decide / after_end) evaluated *at* the instant, so the sink can place
the first sample exactly and a preemption cuts the playing segment at the very sample
the preempting item starts. Outcomes (played, preempted, failed, missed) go to the
play log as they become final.

After a crash, the item the earlier run was playing *rejoins* in step (see
schedules.arbiter.rejoin_position) and keeps its one proof of play, which says so.

An item whose clip is still arriving (the fetcher is getting it) when it is decided *waits
for the clip*: the fetcher's clip-ready callback wakes the player, which starts it from its
beginning as soon as the clip is verified. An emergency or priority item waits as long as it
still fits its slot (it starts late); a normal item only until its planned instant, then
fails with "missing clip".

An item with relay parts reads through `relay.ItemReader` (relayed frames, silence, the
fallback clip); its outcome carries what they sounded like. A missing fallback clip is not a
failure: the reader plays silence and the reason says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from audio.clock import Clock
from audio.errors import AudioError
from audio.pcmformat import FRAME_SAMPLES, SAMPLE_RATE
from audio.sinks import AudioSink, SinkError
from edge_agent.amplifier import AmplifierControl
from edge_agent.hardware import Hardware
from edge_agent.live import Grant
from edge_agent.playback import (
    INTERRUPTED,
    READ_BLOCK,
    ClipReader,
    ClipSource,
    FrameHook,
    Interrupted,
    Offload,
    PcmReader,
    PlayLog,
    PlayOutcome,
    Segment,
    TimeBase,
    load_decoder,
    write_segment,
)
from edge_agent.relay import ItemReader, RelayFrames, RelayTally
from firmware_profiles import FirmwareProfile
from protocol import LivePriority
from schedules import (
    DEFAULT_SLOT_GRACE,
    Action,
    ActivePlayback,
    PlaybackItem,
    Priority,
    Suspended,
    after_end,
    decide,
    latest_start,
    rejoin_position,
)

if TYPE_CHECKING:  # numpy and the ducking arithmetic load with the first item, not at idle
    from audio.pcm import Pcm
    from edge_agent.ducking import Bed

log = logging.getLogger(__name__)

PREP_S = 0.25  # decode the first audio and be ready when an item must start "now"
REJOIN_PREP_S = 0.5  # more for a rejoin: it decodes what it skips, on a just-started agent
IDLE_WAKE_S = 1.0  # re-read the clock offset at least this often
RECENT_SEGMENTS = 64
# Levels that wait past their instant for a clip still arriving: an emergency plays late
# rather than never, and a priority item is never dropped. A normal item's clip ships with
# the schedule days ahead: missing at its instant, it is a fault to report then, and playing
# it late would push back the items planned after it.
LATE_FOR_CLIP = frozenset({Priority.EMERGENCY, Priority.PRIORITY})


def _timeline_order(item: PlaybackItem) -> tuple[datetime, int, str]:
    return item.start, -item.priority.rank, item.item_id


class Player:
    """Plays PlaybackItems on an audio sink at their planned start."""

    def __init__(
        self,
        *,
        clock: Clock,
        timebase: TimeBase,
        clips: ClipSource,
        open_sink: Callable[[], AudioSink],
        hardware: Hardware,
        profile: FirmwareProfile,
        play_log: PlayLog,
        desired_volume: Callable[[], tuple[int, bool]],
        set_volume: Callable[[int], Awaitable[None]],
        done: Iterable[str] = (),
        lead_s: float = 1.0,
        slot_grace: timedelta = DEFAULT_SLOT_GRACE,
        software_volume: bool = False,
        offload: Offload = asyncio.to_thread,
        relay_frames: RelayFrames | None = None,
    ) -> None:
        self.clock = clock
        self.relay_frames = relay_frames if relay_frames is not None else RelayFrames()
        self._relay_tally: dict[str, RelayTally] = {}  # item id -> relay parts heard so far
        self.timebase = timebase
        self.clips = clips
        self._open_sink = open_sink
        self.hardware = hardware
        self.profile = profile
        self.play_log = play_log
        self._desired_volume = desired_volume
        self._set_volume = set_volume
        self.lead_s = lead_s
        self.slot_grace = slot_grace
        self.software_volume = software_volume
        self._offload = offload
        self._done: set[str] = set(done)
        self._pending: list[PlaybackItem] = []
        self._current: Segment | None = None
        self._suspended: list[Suspended] = []
        self._waiting: list[PlaybackItem] = []
        self._awaiting: dict[str, tuple[PlaybackItem, float]] = {}  # id -> (item, since when)
        self._decoder_loaded = False
        self._first_start: dict[str, float] = {}  # item id -> server time of its first sample
        self._rejoin: dict[str, Interrupted] = {}  # cut by a restart, not yet dispatched
        self._rejoined: dict[str, float] = {}  # item id -> position it picked up at
        # Ducking: item id -> (its bed, the announcement over it, its position then), and
        # once that announcement is over, item id -> the bed it resumes from.
        self._ducked: dict[str, tuple[Bed, Segment, float]] = {}
        self._beds: dict[str, Bed] = {}
        self._chain: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sink: AudioSink | None = None
        self._wake = asyncio.Event()
        # The timeline step, schedule changes and segment endings await (disk, hardware)
        # part way through; one at a time, so none sees another's half-done changes.
        self._lock = asyncio.Lock()
        self._started_mono = clock.monotonic()
        self.amplifier = AmplifierControl(
            config=profile.amplifier, hardware=hardware, offload=offload
        )
        self._applied_volume: int | None = None
        self.segments: deque[Segment] = deque(maxlen=RECENT_SEGMENTS)  # tests, diagnostics
        self._live: tuple[str, Priority] | None = None  # the live session holding the card
        # Called (session id, reason) when a scheduled item outranks the live session.
        self.on_live_preempted: Callable[[str, str], None] | None = None
        self.on_frame: FrameHook | None = None  # every frame written (silence.SilenceWatcher)

    # -- schedule ---------------------------------------------------------------------------

    async def set_schedule(self, items: Sequence[PlaybackItem], *, fresh: set[str]) -> None:
        """Play these items from now on; `fresh` are ids this device did not hold before."""
        async with self._lock:
            await self._replace_schedule(items, fresh)
        self._wake.set()

    async def _replace_schedule(self, items: Sequence[PlaybackItem], fresh: set[str]) -> None:
        now = self.clock.monotonic()
        by_id = {item.item_id: item for item in items}
        at = self._dt(now + PREP_S)
        # Over before this device ever heard of them: nobody expected it to play them.
        stale = [
            i
            for i in items
            if i.item_id in fresh
            and i.item_id not in self._done
            and at > latest_start(i, slot_grace=self.slot_grace)
        ]
        if stale:
            self._done.update(i.item_id for i in stale)
            await self.play_log.ignored(stale)
        busy = {s.item.item_id for s in self._suspended} | {w.item_id for w in self._waiting}
        for item_id, (held, since) in list(self._awaiting.items()):
            newer = by_id.get(item_id)
            if newer is not None and newer.start == held.start:
                self._awaiting[item_id] = (newer, since)  # it may name other clips now
                busy.add(item_id)
                continue
            # Withdrawn (no proof, like a pending item) or moved (back on the timeline).
            del self._awaiting[item_id]
            log.info("item %s: no longer waits for its clip (removed or moved)", item_id)
        current = self._current
        if current is not None:
            busy.add(current.item.item_id)
            if current.item.item_id not in by_id:
                current.stop_mono = max(now + 0.05, current.start_mono)
                current.stop_reason = "removed from the schedule"
        for stopped in [s for s in self._suspended if s.item.item_id not in by_id]:
            self._suspended.remove(stopped)
            await self._finish_suspended(stopped, "removed from the schedule while preempted")
        self._waiting = [by_id[w.item_id] for w in self._waiting if w.item_id in by_id]
        for gone in [
            p for p in self._pending if p.item_id in self._rejoin and p.item_id not in by_id
        ]:
            why = f"{INTERRUPTED}; removed from the schedule before it resumed"
            cut = self._rejoin.pop(gone.item_id)
            await self._finish(PlayOutcome(gone, "failed", cut.actual_start, reason=why))
        self._pending = sorted(
            (i for i in items if i.item_id not in self._done and i.item_id not in busy),
            key=_timeline_order,
        )

    def restore_done(self, item_ids: Iterable[str]) -> None:
        """Items with an outcome from an earlier run: never played or reported again."""
        self._done.update(item_ids)

    def rejoin(self, item_id: str, cut: Interrupted) -> None:
        """An earlier run died playing this item: pick it up in step when it is dispatched."""
        self._rejoin[item_id] = cut
        self._first_start[item_id] = cut.actual_start  # its proof keeps the real first sample

    @property
    def busy(self) -> bool:
        """True while an item is placed on the timeline (playing or about to) or live plays."""
        return self._current is not None or self._live is not None

    # -- live audio (edge_agent.live.PlaybackArbiter) ----------------------------------------

    async def request_live(self, *, session_id: str, priority: LivePriority) -> Grant:
        """Give the sound card to a live session unless a higher-priority item is playing.

        The playing item is suspended at the last sample already queued (it resumes, or is
        marked preempted, when the live session releases the card, as schedules.arbiter
        decides); items falling due meanwhile wait.
        """
        rank = Priority(priority)
        async with self._lock:
            current = self._current
            if current is not None and current.item.priority.outranks(rank):
                return Grant(
                    False,
                    f"the {current.item.priority.value} programme item {current.item.item_id} "
                    "is playing",
                )
            self._live = (session_id, rank)
            if current is not None:
                at = max(self.clock.monotonic(), current.start_mono)
                if self._sink is not None:
                    at = max(at, self._sink.next_sample_monotonic())
                current.stop_mono = min(at, current.stop_mono)
                current.stop_reason = f"preempted by live session {session_id}"
                self._suspended.append(
                    Suspended(current.item, current.position_at(at), self._dt(at))
                )
                self._current = None
        self._wake.set()
        now = self.clock.monotonic()
        self._reclaim_output(f"live session {session_id}")
        await self.amplifier.ready_by(now, now=now)
        return Grant(True)

    async def quiet(self) -> None:
        """Return once scheduled audio has stopped writing to the sound card."""
        chain = self._chain
        if chain is not None and not chain.done():
            await asyncio.wait({chain})

    async def release(self, *, session_id: str) -> None:
        """The live session is over: resume or start what waited."""
        async with self._lock:
            if self._live is None or self._live[0] != session_id:
                return
            self._live = None
            self._applied_volume = None  # live audio may have set the emergency volume
            await self._after_end(self.clock.monotonic(), [])
        self._wake.set()

    def forget_volume(self) -> None:
        """Someone else set the hardware volume: set it again before the next item."""
        self._applied_volume = None

    def nudge(self) -> None:
        """Re-evaluate now (a clip arrived, the volume changed)."""
        self._wake.set()

    # -- main loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Play until cancelled; then stop the audio and switch the amplifier off."""
        try:
            while True:
                self._wake.clear()
                async with self._lock:
                    await self._advance_timeline()
                await self.amplifier.drive(
                    now=self.clock.monotonic(),
                    upcoming=self._next_audio(),
                    busy_until=self._busy_until(),
                )
                await self._sleep(self._next_wake())
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._sink is not None:
                with contextlib.suppress(Exception):
                    await self._sink.close(drain=False)
            await self.amplifier.off()

    async def _sleep(self, until: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep_until(until))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _next_wake(self) -> float:
        now = self.clock.monotonic()
        wake = now + IDLE_WAKE_S
        instant = min(self._current_end(), self._next_start())
        wake = min(wake, instant - self.lead_s, self._clip_deadline())
        change = self.amplifier.next_change(
            upcoming=self._next_audio(), busy_until=self._busy_until()
        )
        wake = min(wake, change)
        return max(wake, now + 0.01)  # never spin, e.g. while the amplifier refuses to switch

    def _current_end(self) -> float:
        return self._current.stop_mono if self._current is not None else math.inf

    def _next_start(self) -> float:
        return self._mono(self._pending[0].start) if self._pending else math.inf

    def _clip_deadline(self) -> float:
        """The earliest instant an item waiting for its clip must give up."""
        return min(
            (self._give_up_at(item) for item, _ in self._awaiting.values()), default=math.inf
        )

    def _give_up_at(self, item: PlaybackItem) -> float:
        """The last instant a clip may become ready for the item to start in time."""
        if item.priority in LATE_FOR_CLIP:
            return self._mono(latest_start(item, slot_grace=self.slot_grace)) - PREP_S
        return self._mono(item.start) - PREP_S

    async def _settle_awaiting(self) -> None:
        """Items waiting for a clip: due now if it arrived, failed once it can no longer fit."""
        now = self.clock.monotonic()
        for item_id, (item, since) in list(self._awaiting.items()):
            missing = [c.sha256 for c in item.clips if not self.clips.ready(c.sha256)]
            if not missing:
                del self._awaiting[item_id]
                log.info("item %s: its clip arrived after %.2f s of waiting", item_id, now - since)
                # Back on the timeline at its planned start (passed: it is dispatched now).
                self._pending = sorted([item, *self._pending], key=_timeline_order)
                continue
            late = now >= self._give_up_at(item)
            if late or not all(self.clips.arriving(sha) for sha in missing):
                del self._awaiting[item_id]
                why = f"missing clip {missing[0]}"
                if late:
                    why += f": it did not arrive within {now - since:.1f} s"
                await self._finish(PlayOutcome(item, "failed", reason=why))

    async def _advance_timeline(self) -> None:
        await self._settle_awaiting()
        while True:
            horizon = self.clock.monotonic() + self.lead_s
            end, start = self._current_end(), self._next_start()
            if min(end, start) > horizon:
                return
            if end <= start:
                self._current = None
                due: list[PlaybackItem] = []
                while self._pending and self._mono(self._pending[0].start) <= end:
                    due.append(self._pending.pop(0))
                await self._after_end(end, due)
            else:
                await self._dispatch(self._pending.pop(0), start)

    async def _dispatch(self, item: PlaybackItem, instant: float) -> None:
        if item.item_id in self._rejoin:
            await self._rejoin_item(item, self._rejoin.pop(item.item_id))
            return
        if self._live is not None:
            session_id, rank = self._live
            if item.priority.outranks(rank) and self.on_live_preempted is not None:
                why = f"preempted by the {item.priority.value} programme item {item.item_id}"
                self.on_live_preempted(session_id, why)
            self._waiting.append(item)  # decided again when the live session releases the card
            return
        now = self.clock.monotonic()
        at = max(instant, now + PREP_S)
        playing = None
        if self._current is not None:
            playing = ActivePlayback(self._current.item, self._current.position_at(at))
        decision = decide(
            playing=playing, incoming=item, now=self._dt(at), slot_grace=self.slot_grace
        )
        if decision.action is Action.MISS:
            why = (
                "its start passed while the agent was not running"
                if instant < self._started_mono
                else "it could no longer finish within its slot"
            )
            await self._finish(PlayOutcome(item, "missed", reason=why))
        elif decision.action is Action.WAIT:
            self._waiting.append(item)
        else:
            await self._start(item, 0.0, at, preempt=decision.action is Action.PREEMPT)

    async def _rejoin_item(self, item: PlaybackItem, cut: Interrupted) -> None:
        now = self.clock.monotonic()
        at = now + REJOIN_PREP_S
        missing = [c.sha256 for c in item.clips if not self.clips.ready(c.sha256)]
        why = ""
        if self._rejoin_position(item, cut, at) is None:
            pass  # its audio would be over by now: reported as before rejoining existed
        elif missing:
            why = f"; not resumed: clip {missing[0]} is no longer in the cache"
        elif self._live is not None:
            why = "; not resumed: a live session holds the output"
        else:
            at = await self.amplifier.ready_by(at, now=now)
        position = self._rejoin_position(item, cut, at)
        if position is None or why:
            outcome = PlayOutcome(item, "failed", cut.actual_start, reason=INTERRUPTED + why)
            await self._finish(outcome)
            return
        playing = self._current
        if playing is not None and not item.priority.outranks(playing.item.priority):
            # Something at least as important plays: go on from here after it, as if preempted.
            self._suspended.append(Suspended(item, position, self._dt(at)))
            self._rejoined[item.item_id] = position
        elif await self._start(item, position, at, preempt=playing is not None, rejoined=True):
            self._rejoined[item.item_id] = position
        if item.item_id in self._rejoined:
            log.info("item %s: picked up in step at %.2f s after a restart", item.item_id, position)

    def _rejoin_position(self, item: PlaybackItem, cut: Interrupted, at: float) -> float | None:
        heard_at = datetime.fromtimestamp(cut.heard_at, UTC)
        return rejoin_position(
            item,
            position_s=cut.position_s,
            heard_at=heard_at,
            now=self._dt(at),
            slot_grace=self.slot_grace,
        )

    async def _after_end(self, end: float, due: list[PlaybackItem]) -> None:
        at = max(end, self.clock.monotonic() + PREP_S)
        waiting = self._waiting + due
        while True:
            live = [self._played_on(s) for s in self._suspended if s.item.item_id not in self._done]
            result = after_end(
                suspended=live, waiting=waiting, now=self._dt(at), slot_grace=self.slot_grace
            )
            for stopped in result.preempted:
                await self._finish_suspended(stopped, "its slot ended while it was preempted")
            for item in result.missed:
                reason = "it waited for other items and no longer fit its slot"
                await self._finish(PlayOutcome(item, "missed", reason=reason))
            self._suspended, self._waiting = list(result.suspended), list(result.waiting)
            waiting = self._waiting
            if result.resume is not None:
                stopped = result.resume
                if await self._start(stopped.item, stopped.position_s, at, preempt=False):
                    return
            elif result.start is not None:
                if await self._start(result.start, 0.0, at, preempt=False):
                    return
            else:
                return

    async def _start(
        self,
        item: PlaybackItem,
        position: float,
        at: float,
        *,
        preempt: bool,
        rejoined: bool = False,
    ) -> bool:
        started = self._first_start.get(item.item_id)
        missing = [c.sha256 for c in item.clips if not self.clips.ready(c.sha256)]
        if missing and self._may_wait(item, position, missing):
            self._awaiting[item.item_id] = (item, self.clock.monotonic())
            log.info("item %s: waiting for clip %s, still arriving", item.item_id, missing[0])
            if not self._decoder_loaded:  # loaded while the clip arrives, not after (~0.3 s)
                self._decoder_loaded = True
                self._spawn(self._offload(load_decoder))
            return False
        if missing:
            why = f"missing clip {missing[0]}"
            await self._finish(PlayOutcome(item, "failed", started, reason=why))
            return False
        volume, muted = self._volume_for(item)
        if muted:
            why = "muted by the desired state"
            await self._finish(PlayOutcome(item, "failed", started, reason=why))
            return False
        self._reclaim_output(f"item {item.item_id}")
        at = await self.amplifier.ready_by(at, now=self.clock.monotonic())
        current = self._current
        bed = None
        if preempt and current is not None and at < current.stop_mono:
            if item.ducks and position == 0.0 and current.item.priority is not Priority.EMERGENCY:
                bed, at = self._duck(current, item, at)
            current.stop_mono = at
            current.stop_reason = f"preempted by {item.item_id}"
            self._suspended.append(Suspended(current.item, current.position_at(at), self._dt(at)))
        remaining = item.duration.total_seconds() - position
        segment = Segment(item, position, at, at + remaining, volume, rejoined=rejoined)
        if bed is not None and current is not None:
            segment.bed = bed
            self._ducked[current.item.item_id] = (bed, segment, current.position_at(at))
        segment.resumes = self._beds.pop(item.item_id, None)
        if segment.resumes is not None:
            resumes = segment.resumes
            from edge_agent.ducking import Ramp  # loaded by then (resumes is a Bed)

            segment.ramps.append(Ramp(resumes.ramp, resumes.gain_db, 0.0))
        segment.task = self._spawn(self._play(segment, self._chain))
        self._chain = segment.task
        self._current = segment
        self.segments.append(segment)
        return True

    def _duck(self, current: Segment, item: PlaybackItem, at: float) -> tuple[Bed | None, float]:
        """Ramp the playing segment down to end at `at`; later if queued audio is in the way."""
        from edge_agent.ducking import Bed, Ramp  # numpy: loads with the first item, not at idle

        ramp = round(item.duck_ramp_ms * SAMPLE_RATE / 1000)
        begins = at - ramp / SAMPLE_RATE
        if current.actual_start_mono is not None and self._sink is not None:
            # Samples already queued keep their level (plus the frame being queued).
            queued = self._sink.next_sample_monotonic() + self._sink.output_latency_s
            begins = max(begins, queued + FRAME_SAMPLES / SAMPLE_RATE)
        ducked_at = begins + ramp / SAMPLE_RATE
        if ducked_at >= current.stop_mono:
            return None, at  # it ends before the ramp could: a plain cut
        bed = Bed(current.item.item_id, gain_db=item.duck_db, ramp=ramp)
        current.ramps.append(Ramp(ramp, 0.0, item.duck_db, ends_at=ducked_at))
        first = round(current.position_s * SAMPLE_RATE)
        current.on_stop = lambda reader, rest, written: bed.take(
            reader, rest, written, start_sample=first
        )
        return bed, ducked_at

    def _played_on(self, stopped: Suspended) -> Suspended:
        """A ducked item played on under its announcement: it resumes where that stopped."""
        ducked = self._ducked.get(stopped.item.item_id)
        if ducked is None or ducked[1] is self._current:
            return stopped
        del self._ducked[stopped.item.item_id]
        bed, over, position = ducked
        self._beds[stopped.item.item_id] = bed
        position += max(0.0, over.stop_mono - over.start_mono)
        position = min(position, stopped.item.duration.total_seconds())
        return Suspended(stopped.item, position, self._dt(max(over.stop_mono, over.start_mono)))

    def _may_wait(self, item: PlaybackItem, position: float, missing: list[str]) -> bool:
        """True if the item may wait for its missing clips rather than fail now."""
        return (
            position == 0.0  # a resumed item had its clips: one missing now is gone
            and item.item_id not in self._first_start
            and all(self.clips.arriving(sha) for sha in missing)
            and self.clock.monotonic() < self._give_up_at(item)
        )

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- one segment on the sink ------------------------------------------------------------

    async def _play(self, seg: Segment, previous: asyncio.Task[None] | None) -> None:
        try:
            await self._write(seg, previous)
        except (SinkError, OSError) as exc:
            log.error("audio output failed while playing %s: %s", seg.item.item_id, exc)
            seg.error = "output error"
            await self._drop_sink()
        except AudioError as exc:
            log.error("cannot decode the clips of %s: %s (%s)", seg.item.item_id, exc, exc.detail)
            seg.error = f"unreadable clip: {exc}"
        async with self._lock:
            await self._segment_done(seg)
        # `segments` keeps it for diagnostics, not the ducking readers it held (a bed's open
        # decoder and buffered samples): its reader has either ended or moved on.
        seg.on_stop = seg.bed = seg.resumes = None

    async def _write(self, seg: Segment, previous: asyncio.Task[None] | None) -> None:
        skip = round(seg.position_s * SAMPLE_RATE)
        reader: PcmReader | None = None
        bed: Bed | None = None
        if seg.resumes is not None:  # ducked: read on from the bed once the announcement stops
            if previous is not None:
                await asyncio.wait({previous})
            if abs(seg.resumes.position - skip) <= 2:
                reader = bed = seg.resumes
        if reader is None and seg.item.relays:
            reader = ItemReader(
                seg.item,
                frames=self.relay_frames,
                clip_path=self.clips.path,
                clip_ready=self.clips.ready,
                heard_at=self.timebase.server_time(seg.start_mono),
                skip_samples=skip,
                server_now=self.timebase.server_time,
            )
        elif reader is None:
            paths = [self.clips.path(c.sha256) for c in seg.item.clips]
            reader = ClipReader(paths, skip_samples=skip)
        try:
            await self._write_reader(seg, previous, reader)
        finally:
            if isinstance(reader, ItemReader):
                self._tally_relay(seg, reader)
            elif bed is not None and isinstance(bed.root, ItemReader):
                self._tally_relay(seg, bed.root, counted=bed.counted, at=bed.root_heard)

    def _tally_relay(
        self, seg: Segment, reader: ItemReader, *, counted: int = 0, at: int = 0
    ) -> None:
        """Add what the relay parts sounded like, from `counted` to the sample it stopped at.

        A segment reading on from a bed starts `at` samples into its reader; the samples
        heard under the announcement (from `counted`) are added with it.
        """
        if seg.actual_start_mono is None:
            return  # nothing of it was heard
        played = None  # an output error: count what was read
        if seg.end_mono is not None:
            played = round((seg.end_mono - seg.actual_start_mono) * SAMPLE_RATE)
        tally = self._relay_tally.setdefault(seg.item.item_id, RelayTally())
        heard = reader.tally(None if played is None else at + played)
        if counted:  # read through a bed: what was heard before it is counted already
            before = reader.tally(counted)
            kinds = ("relayed", "fallback", "silent")
            heard = RelayTally(*(getattr(heard, k) - getattr(before, k) for k in kinds))
        tally.add(heard)

    async def _write_reader(
        self, seg: Segment, previous: asyncio.Task[None] | None, reader: PcmReader
    ) -> None:
        block: Pcm = await self._offload(reader.read, READ_BLOCK)
        if previous is not None:
            await asyncio.wait({previous})  # one writer at a time on the sink
        if seg.stop_mono <= seg.start_mono:
            return  # cut to nothing before it began
        if seg.bed is not None and seg.bed.reader is not None:  # the ducked item plays under
            from edge_agent.ducking import MixReader  # loaded by then (seg.bed is a Bed)

            mixer = MixReader(reader, seg.bed, first=block)
            reader, seg.on_stop = mixer, mixer.hand_back
            block = await self._offload(mixer.read, READ_BLOCK)
        sink = await self._sink_open()
        if seg.volume != self._applied_volume:
            await self._set_volume(seg.volume)
            self._applied_volume = seg.volume
        gain = seg.volume / 100 if self.software_volume else 1.0
        item_id = seg.item.item_id

        def started(start: float) -> None:
            heard = seg.heard_at = self.timebase.server_time(start)
            # Not awaited: a disk write must never make the sink run dry.
            if item_id not in self._first_start:
                self._first_start[item_id] = heard
                self._spawn(self.play_log.started(seg.item, heard))
            self._spawn(self.play_log.on_air(seg.item, position_s=seg.position_s, at=heard))

        await write_segment(
            seg,
            sink,
            reader,
            block,
            gain=gain,
            offload=self._offload,
            on_started=started,
            on_frame=self.on_frame,
        )

    async def _segment_done(self, seg: Segment) -> None:
        item = seg.item
        if item.item_id in self._done:
            return
        started = self._first_start.get(item.item_id)
        ended = self.timebase.server_time(seg.end_mono) if seg.end_mono is not None else None
        if seg.error is not None:
            self._suspended = [s for s in self._suspended if s.item.item_id != item.item_id]
            ended = ended or self.timebase.server_time()
            await self._finish(PlayOutcome(item, "failed", started, ended, seg.error))
        elif seg.cut_short and seg.stop_reason.startswith("removed"):
            await self._finish(PlayOutcome(item, "preempted", started, ended, seg.stop_reason))
        elif not seg.cut_short:
            reason = "resumed after a preemption" if seg.position_s > 0 and not seg.rejoined else ""
            if seg.resumes is not None:
                reason = f"played on {seg.resumes.gain_db:g} dB lower under an announcement"
            ended = ended or self.timebase.server_time(seg.stop_mono)
            await self._finish(PlayOutcome(item, "played", started, ended, reason))
        elif seg.heard_at is not None:  # suspended: a restart must not pick it up
            # Not awaited: the preempting segment is about to start on the sink.
            self._spawn(self.play_log.off_air(item, at=seg.heard_at))

    async def _finish_suspended(self, stopped: Suspended, why: str) -> None:
        started = self._first_start.get(stopped.item.item_id)
        await self._finish(
            PlayOutcome(stopped.item, "preempted", started, stopped.suspended_at.timestamp(), why)
        )

    async def _finish(self, outcome: PlayOutcome) -> None:
        if outcome.item.item_id in self._done:
            return
        self._done.add(outcome.item.item_id)
        self._first_start.pop(outcome.item.item_id, None)
        self._beds.pop(outcome.item.item_id, None)
        ducked = self._ducked.pop(outcome.item.item_id, None)
        if ducked is not None and "removed" in outcome.reason:
            ducked[0].silence()  # no longer heard under the announcement either
        rejoined = self._rejoined.pop(outcome.item.item_id, None)
        if rejoined is not None:  # one proof for the whole item, saying what really happened
            total = outcome.item.duration.total_seconds()
            note = (
                "interrupted by an agent restart; "
                f"resumed in step at {rejoined:.1f} s of {total:.1f} s"
            )
            reason = "; ".join(r for r in (note, outcome.reason) if r)
            outcome = replace(outcome, reason=reason, resumed_at_s=round(rejoined, 3))
        relay = self._relay_tally.pop(outcome.item.item_id, None)
        if relay is not None:  # only for a relay item that played some of its audio
            reason = "; ".join(r for r in (outcome.reason, relay.summary()) if r)
            outcome = replace(
                outcome,
                reason=reason,
                relay_mode=relay.mode,
                relayed_s=relay.seconds("relayed"),
                fallback_s=relay.seconds("fallback"),
                silent_s=relay.seconds("silent"),
            )
        if outcome.outcome != "played":
            log.warning("item %s: %s (%s)", outcome.item.item_id, outcome.outcome, outcome.reason)
        try:
            await self.play_log.finished(outcome)
        except Exception:  # the player must keep playing even when the disk fails
            log.exception("could not record the outcome of %s", outcome.item.item_id)

    # -- sink, volume, timeline ------------------------------------------------------------

    async def _sink_open(self) -> AudioSink:
        if self._sink is None:
            sink = self._open_sink()
            await sink.start()
            self._sink = sink
        return self._sink

    async def _drop_sink(self) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            with contextlib.suppress(Exception):
                await sink.close(drain=False)

    def _volume_for(self, item: PlaybackItem) -> tuple[int, bool]:
        if item.priority is Priority.EMERGENCY:
            return self.profile.volume.emergency, False
        desired, muted = self._desired_volume()
        volume = desired if item.volume is None else item.volume
        return min(volume, self.profile.volume.max), muted

    def _busy_until(self) -> float:
        """When the audio placed so far ends."""
        if self._live is not None:
            return math.inf
        return max((s.stop_mono for s in self.segments), default=-math.inf)

    def _next_audio(self) -> float:
        """The earliest start of audio playing now or still to come (pending or placed)."""
        now = self.clock.monotonic()
        if self._live is not None:
            return now
        if self._awaiting:
            return now  # warm the amplifier while the clip arrives: it starts the moment it is
        placed = (s.start_mono for s in self.segments if s.stop_mono > now and s.error is None)
        return min(self._next_start(), min(placed, default=math.inf))

    # -- time -------------------------------------------------------------------------------

    def _mono(self, when: datetime) -> float:
        return self.timebase.to_monotonic(when.timestamp())

    def _dt(self, mono: float) -> datetime:
        return datetime.fromtimestamp(self.timebase.server_time(mono), UTC)

    # -- the output lent for a short test (edge_agent.selftest) -----------------------------

    _lent: _Lent | None = None  # who holds the output while nothing plays

    def borrow_output(self, *, seconds: float) -> _Lent:
        """`async with`: the idle output (amplifier warm) for about `seconds`; see _Lent."""
        return _Lent(self, seconds)

    def _reclaim_output(self, why: str) -> None:
        """Something must play: the borrower is cancelled at once (OutputReclaimed in it)."""
        lent = self._lent
        if lent is not None and lent.reclaimed_by is None and lent.task is not None:
            lent.reclaimed_by = why
            lent.task.cancel()
            log.info("the output is taken back from the self-test for %s", why)


class OutputBusy(Exception):
    """The output cannot be lent: something plays, or starts before the borrower would end."""


class OutputReclaimed(Exception):
    """An item or a live session took the lent output back; the message says which."""


class _Lent:
    """The sound card lent by Player.borrow_output to one task while the player is idle."""

    # The amplifier is switched here rather than by the player's AmplifierControl, whose
    # idle loop would switch it off mid-test; once reclaimed it is left on for the player.

    def __init__(self, player: Player, seconds: float) -> None:
        self.player = player
        self.seconds = seconds
        self.task: asyncio.Task[object] | None = None
        self.reclaimed_by: str | None = None
        self._switched = False
        self._sink: AudioSink | None = None

    async def __aenter__(self) -> AudioSink:
        p = self.player
        await p.quiet()  # the last segment's writer has finished with the card
        starts_in = p._next_start() - p.clock.monotonic() - p.lead_s
        if p.busy or p._lent is not None or p._awaiting or starts_in < self.seconds:
            raise OutputBusy("a programme or a live session is playing or about to start")
        self.task = asyncio.current_task()
        p._lent = self
        try:
            amp = p.amplifier
            if amp.switched and not amp.on:
                self._switched = True
                await p._offload(p.hardware.set_amplifier, True)
                await p.clock.sleep_until(p.clock.monotonic() + amp.warmup_s)
            self._sink = p._open_sink()
            await self._sink.start()
        except BaseException as exc:
            await self._give_back()
            raise self._translated(exc) from None
        return self._sink

    async def __aexit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        await self._give_back()
        if exc is not None:
            translated = self._translated(exc)
            if translated is not exc:
                raise translated from None
        return False

    def _translated(self, exc: BaseException) -> BaseException:
        """Our own cancel becomes OutputReclaimed; any other (the agent stopping) stays."""
        task = self.task
        if not isinstance(exc, asyncio.CancelledError) or self.reclaimed_by is None:
            return exc
        if task is not None and task.uncancel() > 0:
            return exc
        return OutputReclaimed(self.reclaimed_by)

    async def _give_back(self) -> None:
        p = self.player
        if p._lent is self:
            p._lent = None
        sink, self._sink = self._sink, None
        if sink is not None:
            with contextlib.suppress(Exception):
                await sink.close(drain=False)
        if self._switched and self.reclaimed_by is None:
            self._switched = False
            with contextlib.suppress(Exception):
                await p._offload(p.hardware.set_amplifier, False)
                if p.amplifier.on:  # the player switched it on meanwhile: it must stay on
                    await p._offload(p.hardware.set_amplifier, True)
