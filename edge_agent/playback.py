"""One stretch of an item's audio on the sink, and the interfaces the player works through.

A *segment* is an item played from a position for at most its remaining duration; a
preemption shortens it by moving `stop_mono` earlier, which the writer honours to the
sample (it writes 20 ms frames and checks before each). Audio shorter than the planned
duration is padded with silence, so a segment always lasts exactly as planned and the
player's timeline stays exact.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from audio.pcmformat import FRAME_SAMPLES
from audio.sinks import AudioSink
from schedules import PlaybackItem

if TYPE_CHECKING:  # numpy loads with the first item played, not at idle
    from audio.pcm import Pcm
    from edge_agent.ducking import Bed, Ramp, Reader

T = TypeVar("T")
Offload = Callable[..., Awaitable[Any]]
READ_BLOCK = 48_000 // 5  # decode 200 ms per worker-thread call
Outcome = Literal["played", "preempted", "failed", "missed"]
INTERRUPTED = "interrupted: the agent stopped during playback"


def load_decoder() -> None:
    """Import the decoder now (blocking): an item about to play must not wait for PyAV."""
    import audio.decode  # noqa: F401


class ClipReader:
    """The clips of an item back to back as one stream of 48 kHz mono samples (blocking)."""

    def __init__(self, paths: Sequence[Path], *, skip_samples: int = 0) -> None:
        self._paths = list(paths)
        self._frames: Iterator[Pcm] | None = None
        self._pending: Pcm | None = None  # read past the last block (made on the loop: no numpy)
        self._skip = max(0, skip_samples)

    def _next_frame(self) -> Pcm | None:
        while True:
            if self._frames is None:
                if not self._paths:
                    return None
                # PyAV (~20 MB resident) loads with the first clip played, not at idle.
                from audio.decode import iter_pcm_frames

                self._frames = iter_pcm_frames(self._paths.pop(0), FRAME_SAMPLES, pad_last=False)
            frame = next(self._frames, None)
            if frame is not None:
                return frame
            self._frames = None

    def read(self, n_samples: int) -> Pcm:
        """Up to n_samples (fewer only when every clip is exhausted)."""
        import numpy as np  # loads with the first read (in a worker thread), not at idle

        from audio.pcm import silence

        parts = [self._pending] if self._pending is not None and len(self._pending) else []
        have = len(parts[0]) if parts else 0
        while have < n_samples:
            frame = self._next_frame()
            if frame is None:
                break
            if self._skip:  # resuming: decode and drop what was already played
                dropped = min(self._skip, len(frame))
                self._skip -= dropped
                frame = frame[dropped:]
            parts.append(frame)
            have += len(frame)
        block = np.concatenate(parts) if parts else silence(0)
        self._pending = block[n_samples:]
        return block[:n_samples]


@dataclass
class Segment:
    """An item (or the rest of it) placed on the local monotonic timeline."""

    item: PlaybackItem
    position_s: float  # where in the item it starts
    start_mono: float  # when its first sample must be heard
    stop_mono: float  # when it must end; moved earlier by a preemption or a removal
    volume: int
    stop_reason: str = ""  # why it ended early ("preempted by ...", "removed ...")
    rejoined: bool = False  # placed in step after an agent restart cut the item
    actual_start_mono: float | None = None
    heard_at: float | None = None  # server time of actual_start_mono, as reported on air
    end_mono: float | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    # Ducking (edge_agent.ducking): gain ramps on its own samples, the bed mixed under it,
    # the bed it reads on from, and who takes its reader and unplayed samples when it stops.
    ramps: list[Ramp] = field(default_factory=list, repr=False)
    bed: Bed | None = field(default=None, repr=False)
    resumes: Bed | None = field(default=None, repr=False)
    on_stop: Callable[[Reader, Pcm, int], None] | None = field(default=None, repr=False)

    @property
    def natural_end(self) -> float:
        """When the item's audio ends if nothing interrupts it."""
        return self.start_mono + (self.item.duration.total_seconds() - self.position_s)

    @property
    def cut_short(self) -> bool:
        """True when a preemption or removal ended it before its natural end."""
        return self.stop_mono < self.natural_end - 1e-6

    def position_at(self, mono: float) -> float:
        """The item position (s) being heard at a local monotonic instant."""
        duration = self.item.duration.total_seconds()
        return min(duration, max(0.0, self.position_s + (mono - self.start_mono)))


# Sees every frame of a segment before the volume (silence.SilenceWatcher): the segment,
# the samples written before it, the frame. Called on the loop: it must be cheap.
FrameHook = Callable[[Segment, int, "Pcm"], None]


@dataclass(frozen=True)
class PlayOutcome:
    """The final word on one item (times are server Unix seconds)."""

    item: PlaybackItem
    outcome: Outcome
    actual_start: float | None = None
    ended_at: float | None = None
    reason: str = ""
    # Item position (s) where it picked up again after an agent restart cut it; None if not.
    resumed_at_s: float | None = None
    # Relay items only (edge_agent.relay): how the relayed stretches sounded, in seconds.
    relay_mode: Literal["relayed", "fallback", "mixed"] | None = None
    relayed_s: float | None = None
    fallback_s: float | None = None
    silent_s: float | None = None


@dataclass(frozen=True)
class Interrupted:
    """An item an earlier run was playing when it died (times are server Unix seconds)."""

    actual_start: float  # its first sample, as reported
    position_s: float  # the item position heard at `heard_at`
    heard_at: float


class PcmReader(Protocol):
    """What write_segment reads from: ClipReader, or relay.ItemReader for relay items."""

    def read(self, n_samples: int) -> Pcm:
        """Up to n_samples (fewer only at the end)."""
        ...


class TimeBase(Protocol):
    """Converts between server time and the local monotonic clock (ClockSync)."""

    def server_time(self, monotonic: float | None = None) -> float:
        """Server Unix time at a local monotonic instant."""
        ...

    def to_monotonic(self, server_time: float) -> float:
        """Local monotonic instant of a server time."""
        ...


class ClipSource(Protocol):
    """Verified clips (ClipCache)."""

    def ready(self, sha256: str) -> bool:
        """True if the clip may be played."""
        ...

    def arriving(self, sha256: str) -> bool:
        """True if the clip is not ready but on its way (the fetcher is getting it)."""
        ...

    def path(self, sha256: str) -> Path:
        """Where the verified clip is."""
        ...


class PlayLog(Protocol):
    """Where outcomes go (the outbox)."""

    async def started(self, item: PlaybackItem, actual_start: float) -> None:
        """An item's first sample was placed (kept so a crash mid-play is reported)."""

    async def finished(self, outcome: PlayOutcome) -> None:
        """An item's outcome is final."""

    async def ignored(self, items: Sequence[PlaybackItem]) -> None:
        """Items that were over before this device held them (never reported)."""

    async def on_air(self, item: PlaybackItem, *, position_s: float, at: float) -> None:
        """A segment is heard from server time `at`, `position_s` into the item (for a restart)."""

    async def off_air(self, item: PlaybackItem, *, at: float) -> None:
        """The segment heard from `at` stopped without an outcome (suspended): not to rejoin."""


async def write_segment(
    seg: Segment,
    sink: AudioSink,
    reader: PcmReader,
    block: Pcm,
    *,
    gain: float,
    offload: Offload,
    on_started: Callable[[float], None],
    on_frame: FrameHook | None = None,
) -> None:
    """Place the segment's first sample at seg.start_mono, then stream it until seg.stop_mono.

    `block` is the first decoded audio; `on_started` gets the instant the first sample is
    heard. The stop is re-read before every 20 ms frame, so a preemption decided while
    this runs cuts it at the exact sample.
    """
    # numpy and the ducking arithmetic: loaded by then (`block` is an array).
    import numpy as np

    from audio.pcm import silence
    from edge_agent.ducking import shape

    # Decode the next block while this one plays, so a busy worker pool never starves
    # the sink.
    upcoming = asyncio.ensure_future(offload(reader.read, READ_BLOCK))
    try:
        first, block = block[:FRAME_SAMPLES], block[FRAME_SAMPLES:]
        shaped = shape(first, seg.ramps, 0, start_mono=seg.start_mono)
        playout = await sink.play_at(
            with_gain(shaped, gain), seg.start_mono, label=seg.item.item_id
        )
        start = playout.start_monotonic
        seg.actual_start_mono = start
        on_started(start)
        if on_frame is not None:
            on_frame(seg, 0, shaped)
        written = len(first)
        while True:
            allowed = round((seg.stop_mono - start) * sink.sample_rate)
            if written >= allowed:
                break
            if not len(block):
                block = await upcoming
                upcoming = asyncio.ensure_future(offload(reader.read, READ_BLOCK))
                if not len(block):
                    # Shorter than planned: silence keeps the timeline exact.
                    block = silence(min(READ_BLOCK, allowed - written))
            frame = block[: min(FRAME_SAMPLES, allowed - written)]
            block = block[len(frame) :]
            frame = shape(frame, seg.ramps, written, start_mono=start)
            if on_frame is not None:
                on_frame(seg, written, frame)
            await sink.write(with_gain(frame, gain))
            written += len(frame)
        seg.end_mono = start + written / sink.sample_rate
        if seg.on_stop is not None:  # ducked: its reader plays on, from the first unheard sample
            rest = await upcoming
            seg.on_stop(reader, np.concatenate([block, rest]), written)
    finally:
        upcoming.cancel()
        with contextlib.suppress(BaseException):
            await upcoming


def with_gain(pcm: Pcm, gain: float) -> Pcm:
    """Scale samples (software volume for cards without a mixer)."""
    if gain >= 1.0:
        return pcm
    import numpy as np  # loaded by then (pcm is an array)

    return np.asarray(np.rint(pcm.astype(np.float32) * gain), dtype=np.int16)
