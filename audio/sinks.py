"""Audio outputs: the seam between players and the sound card (ALSA, a recording file, nothing).

Every sink behaves like a sound card and models its device as a sample clock. While it has
audio, the device consumes 48 000 samples a second: stream sample `p` of the current
*segment* is consumed at `segment_start + (p - segment_first) / rate` on the injected
monotonic clock, and heard `output_latency_s` later. `write()` queues audio and awaits only
while the small buffer (default 100 ms) is full, so a writer is paced in real time. When the
buffer runs dry the device stops, as ALSA does on an underrun, and the next write starts a
new segment at that moment: an idle sink costs nothing and its recording holds no hours of
silence.

Playing at an instant -- the design choice. `play_at(pcm, start_monotonic)` places the first
sample on that sample clock, so the start is exact to half a sample whatever the event
loop's wake-up jitter: if the device is running, the sink inserts the exact number of silent
samples before it; if it is stopped, the sink sleeps until shortly (half a buffer) before the
instant, restarts the device and pads from the measured restart time. It never trims: a start
that can no longer be met begins as soon as possible and the returned `Playout` says how
late. After `play_at`, `write()` continues the same item seamlessly, so a player streams a
long clip frame by frame, and live audio is simply written frame after frame (the jitter
buffer aligns it, asking `next_sample_monotonic()` when the next sample will be consumed).
The alternative -- callers writing silence until the instant -- was rejected: every caller
would repeat the arithmetic, and an idle device would have to run (and record) silence.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from audio.clock import Clock, SystemClock
from audio.errors import AudioError
from audio.pcmformat import SAMPLE_RATE, ProgressiveWav, RawPcmOutput

if TYPE_CHECKING:
    from audio.pcm import Pcm


class SinkError(AudioError):
    """An audio output cannot be used (closed, not started, missing tool, device failed)."""

    code = "sink"


@dataclass(frozen=True, slots=True)
class Playout:
    """Where and when an item started: first sample's stream offset and the instant it is heard."""

    label: str
    sample_offset: int
    requested_monotonic: float
    start_monotonic: float
    start_wall: float
    error_s: float  # start - requested; > 0 is late, tiny negatives are rounding to the sample


class AudioSink(Protocol):
    """What players and the live receiver need from an audio output (one writer at a time)."""

    sample_rate: int

    @property
    def output_latency_s(self) -> float:
        """Seconds from the device consuming a sample to it leaving the speaker."""
        ...

    @property
    def frames_written(self) -> int:
        """Samples accepted so far (including silence `play_at` inserted)."""
        ...

    @property
    def restarts(self) -> int:
        """Times the device started again after stopping (ran dry, or play_at let it rest)."""
        ...

    async def start(self) -> None:
        """Open the output; call once before writing."""
        ...

    async def write(self, pcm: Pcm) -> None:
        """Queue samples; awaits while the device buffer is full (real-time pacing)."""
        ...

    async def play_at(self, pcm: Pcm, start_monotonic: float, *, label: str = "") -> Playout:
        """Queue `pcm` so that its first sample is heard at `start_monotonic`."""
        ...

    def next_sample_monotonic(self) -> float:
        """Monotonic instant the device will consume the next written sample."""
        ...

    async def close(self, *, drain: bool = True) -> None:
        """Play out (or, with drain=False, drop) what is queued and release the output."""
        ...


class PacedSink:
    """Base for sinks: the device sample-clock model, pacing, play_at and the close rules."""

    def __init__(
        self,
        clock: Clock,
        *,
        sample_rate: int = SAMPLE_RATE,
        buffer_frames: int = 4800,
        period_frames: int = 960,
        output_latency_s: float = 0.0,
    ) -> None:
        if not 0 < period_frames <= buffer_frames:
            raise ValueError("need 0 < period_frames <= buffer_frames")
        self.clock = clock
        self.sample_rate = sample_rate
        self.buffer_frames = buffer_frames
        self.period_frames = period_frames
        self._latency_s = output_latency_s
        self._started = self._closed = self._running = False
        self._segment_t0 = 0.0  # monotonic instant the device consumes stream sample _segment_pos
        self._segment_pos = 0
        self._wall_offset = 0.0  # wall - monotonic, sampled when the segment started
        self._accepted = 0
        self._played = 0
        # s16le bytes accepted but not yet consumed, kept only by subclasses that need the
        # samples as they play (`_keeps_audio`): one buffer, no per-chunk objects.
        self._unplayed = bytearray()
        self._keeps_audio = False
        self._failure: BaseException | None = None
        self._segments = 0

    @property
    def output_latency_s(self) -> float:
        """Seconds from the device consuming a sample to it being heard."""
        return self._latency_s

    @property
    def frames_written(self) -> int:
        """Samples accepted so far (including silence `play_at` inserted)."""
        return self._accepted

    @property
    def restarts(self) -> int:
        """Times the device started again after stopping (ran dry, or play_at let it rest).

        For a stream written back to back (a live session) each one is a gap in the sound:
        the writer fell behind the device."""
        return max(0, self._segments - 1)

    @property
    def frames_played(self) -> int:
        """Samples the device has consumed up to the last time the sink looked at the clock."""
        return self._played

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed

    async def start(self) -> None:
        """Open the output; a second call does nothing."""
        if self._closed:
            raise SinkError("The audio output is closed and cannot be started again.")
        if not self._started:
            await self._open()
            self._started = True

    async def write(self, pcm: Pcm) -> None:
        """Queue samples, waiting while the buffer is full, like a blocking sound-card write."""
        from audio.pcm import as_pcm  # numpy loads with the first audio, not at idle

        await self._feed(as_pcm(pcm), on_first=None)

    async def play_at(self, pcm: Pcm, start_monotonic: float, *, label: str = "") -> Playout:
        """Queue `pcm` so its first sample is heard at `start_monotonic` (see module doc)."""
        from audio.pcm import as_pcm, silence  # numpy loads with the first audio, not at idle

        pcm = as_pcm(pcm)
        self._check_usable()
        target = start_monotonic - self._latency_s  # when the device must consume it
        wake = target - self.buffer_frames / self.sample_rate / 2
        now = self.clock.monotonic()
        self._advance(now)
        if (self._device_time(self._accepted) if self._running else now) < wake:
            # Far ahead: let the device drain and stop rather than run silence for hours.
            await self.clock.sleep_until(wake)
            self._check_usable()
            now = self.clock.monotonic()
            self._advance(now)
        if not self._running:
            self._start_segment(now)
        target_pos = self._segment_pos + round((target - self._segment_t0) * self.sample_rate)
        await self._feed(silence(max(0, target_pos - self._accepted)), on_first=None)
        placed: list[Playout] = []

        def record(offset: int, device_time: float) -> None:
            heard = device_time + self._latency_s
            playout = Playout(
                label=label,
                sample_offset=offset,
                requested_monotonic=start_monotonic,
                start_monotonic=heard,
                start_wall=heard + self._wall_offset,
                error_s=heard - start_monotonic,
            )
            placed.append(playout)
            self._on_playout(playout)

        await self._feed(pcm, on_first=record)
        if not placed:  # empty pcm: it "starts" where the next sample would
            record(self._accepted, self.next_sample_monotonic())
        if self._running and self._accepted == self._segment_pos:
            self._running = False  # nothing was queued after all: the device never started
        return placed[0]

    def next_sample_monotonic(self) -> float:
        """Monotonic instant the device will consume the next written sample (now if stopped)."""
        now = self.clock.monotonic()
        self._advance(now)
        return self._device_time(self._accepted) if self._running else now

    async def close(self, *, drain: bool = True) -> None:
        """Play out what is queued (or drop it), then release the output; safe to repeat."""
        if self._closed:
            return
        self._closed = True
        if not self._started:
            return
        if drain and self._running and self._failure is None:
            await self.clock.sleep_until(self._device_time(self._accepted))
        self._advance(self.clock.monotonic())
        self._unplayed.clear()  # not drained: what the device never played is dropped
        if self._running:
            self._running = False
            self._on_segment_end(self._played, self._device_time(self._played))
        await self._close_output(drained=drain)

    # -- the device model ------------------------------------------------------------------

    def _device_time(self, position: int) -> float:
        """Monotonic instant the running device consumes stream sample `position`."""
        return self._segment_t0 + (position - self._segment_pos) / self.sample_rate

    def _advance(self, now: float) -> None:
        """Bring the device up to `now`: hand played samples on, stop it if it ran dry."""
        if not self._running:
            return
        # The small epsilon absorbs float rounding so a sleep to an exact sample instant
        # always finds that sample consumed.
        elapsed = math.floor((now - self._segment_t0) * self.sample_rate + 1e-3)
        position = min(self._accepted, self._segment_pos + max(0, elapsed))
        if position > self._played:
            self._consume(position - self._played)
        # Ran dry: the device needed a sample it did not have (strictly after the last one,
        # so a write arriving exactly on time continues the same segment).
        if (
            self._accepted > self._segment_pos
            and position >= self._accepted
            and now > self._device_time(self._accepted)
        ):
            self._running = False
            self._on_segment_end(self._accepted, self._device_time(self._accepted))

    def _consume(self, count: int) -> None:
        """Mark `count` queued samples as played, passing them to `_on_played` if kept."""
        self._played += count
        if self._keeps_audio:
            size = 2 * count
            data = bytes(self._unplayed[:size])
            del self._unplayed[:size]
            self._on_played(data)

    def _start_segment(self, now: float) -> None:
        """The device (re)starts consuming at `now` with the next accepted sample."""
        self._running = True
        self._segments += 1
        self._segment_t0 = now
        self._segment_pos = self._accepted
        self._wall_offset = self.clock.time() - self.clock.monotonic()

    async def _feed(self, pcm: Pcm, *, on_first: _FirstSample | None) -> None:
        """Queue `pcm` in chunks as buffer room frees up; `on_first` sees where it starts."""
        from audio.pcm import to_bytes  # numpy: loaded by then (pcm is an array)

        self._check_usable()
        done = 0
        while done < len(pcm):
            now = self.clock.monotonic()
            self._advance(now)
            if not self._running:
                self._start_segment(now)
            room = self.buffer_frames - (self._accepted - self._played)
            wanted = min(len(pcm) - done, self.period_frames)
            if room < wanted:
                # Sleep until the device has consumed enough for one period (or the rest).
                await self._wait_for_room(self._played + wanted - room)
                self._check_usable()
                continue
            chunk = pcm[done : done + room]
            if self._accepted == self._segment_pos:  # the device starts with this chunk
                self._on_segment_start(self._accepted, self._segment_t0)
            if done == 0 and on_first is not None:
                on_first(self._accepted, self._device_time(self._accepted))
            self._accepted += len(chunk)
            if self._keeps_audio:
                self._unplayed += to_bytes(chunk)
            done += len(chunk)
            await self._on_accepted(chunk)

    def _check_usable(self) -> None:
        """Refuse to write to a sink that is not started, closed or failed."""
        if self._failure is not None:
            raise SinkError("The audio output failed.", detail=repr(self._failure))
        if self._closed:
            raise SinkError("The audio output is closed; audio cannot be written to it.")
        if not self._started:
            raise SinkError("The audio output was not started; call start() before writing.")

    # -- hooks for concrete sinks ----------------------------------------------------------

    async def _wait_for_room(self, position: int) -> None:
        """Wait until the device has consumed stream sample `position` (a writer's wait)."""
        await self.clock.sleep_until(self._device_time(position))

    async def _open(self) -> None:
        """Acquire the output."""

    async def _on_accepted(self, chunk: Pcm) -> None:
        """Samples just queued (a real device gets them now, ahead of playing)."""

    def _on_played(self, data: bytes) -> None:
        """s16le samples the device model just consumed (only if `_keeps_audio`)."""

    def _on_segment_start(self, offset: int, device_time: float) -> None:
        """The device started consuming at stream position `offset`."""

    def _on_segment_end(self, offset: int, device_time: float) -> None:
        """The device ran dry after stream position `offset`."""

    def _on_playout(self, playout: Playout) -> None:
        """An item was placed by play_at."""

    async def _close_output(self, *, drained: bool) -> None:
        """Release the output."""


class _FirstSample(Protocol):
    def __call__(self, offset: int, device_time: float) -> None: ...


class NullSink(PacedSink):
    """A paced sink that discards the audio (simulated devices that need no recording)."""


class _HandOnSink(PacedSink):
    """A paced sink whose device hands the samples on as it plays them (a file, a FIFO).

    A device task wakes once per hand-on block (`hand_on_frames`, 20 ms by default), at the
    instant the sample clock finishes that block, and hands on everything played since, in
    one write: a reader sees each sample at most about one block after its instant. Blocks
    are counted from the segment's first sample, so the deadlines never drift and a late
    wake-up only makes the next write bigger. A writer waiting for room waits until the same
    block end, so the device and the writer share one wake-up of the process per block
    (measured: each extra wake-up of a sleeping process costs more than the work done in it).
    Played samples are collected (`_on_played`) from whichever call advanced the model, and
    handed on by the device task, never in pieces by the writer.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        raw_pcm_path: str | os.PathLike[str] | None,
        hand_on_frames: int,
        sample_rate: int,
        buffer_frames: int,
        period_frames: int,
        output_latency_s: float,
    ) -> None:
        super().__init__(
            clock,
            sample_rate=sample_rate,
            buffer_frames=buffer_frames,
            period_frames=period_frames,
            output_latency_s=output_latency_s,
        )
        if hand_on_frames <= 0:
            raise ValueError("need hand_on_frames > 0")
        self._keeps_audio = True
        self.raw_pcm_path = Path(raw_pcm_path) if raw_pcm_path is not None else None
        self._hand_on_frames = hand_on_frames
        self._raw: RawPcmOutput | None = None
        self._out = bytearray()  # played, not yet handed on
        self._device_task: asyncio.Task[None] | None = None
        self._device_wakeup = asyncio.Event()
        # The position a writer waits for room until, while it waits (see _run_device).
        self._writer_waits: int | None = None

    @property
    def raw_dropped_bytes(self) -> int:
        """Raw PCM bytes dropped because no reader was there or it fell behind."""
        return self._raw.dropped_bytes if self._raw else 0

    def _open_raw(self) -> None:
        """Open the raw output (if any) and start the device task that feeds it."""
        if self.raw_pcm_path is not None:
            self._raw = RawPcmOutput(self.raw_pcm_path)
            self._device_task = asyncio.create_task(self._run_device())

    def _block_end(self, position: int) -> int:
        """The first hand-on block end at or after stream `position` in the current segment."""
        into = max(0, position - self._segment_pos)
        return self._segment_pos + -(-into // self._hand_on_frames) * self._hand_on_frames

    async def _run_device(self) -> None:
        """Hand on block by block in real time while a segment runs."""
        try:
            while not self._closed:
                if not self._running:
                    self._hand_on()
                    self._device_wakeup.clear()
                    await self._device_wakeup.wait()
                    continue
                # The end of the block after the last sample handed on, or the instant the
                # device runs dry if sooner -- unless a writer waiting for room tops the
                # buffer up at a block end before then (it may not have run yet in this very
                # wake-up): else the two would wake apart, twice per block.
                handed = self._played - len(self._out) // 2
                target = self._block_end(handed + 1)
                waits = self._writer_waits
                if self._accepted > handed and (
                    waits is None or self._block_end(waits) > self._accepted
                ):
                    target = min(target, self._accepted)
                await self.clock.sleep_until(self._device_time(target))
                self._advance(self.clock.monotonic())
                self._hand_on()
        except Exception as exc:  # surfaced to the writer by _check_usable
            self._failure = exc

    async def _wait_for_room(self, position: int) -> None:
        if self._device_task is None or not self._running:
            await super()._wait_for_room(position)
            return
        # Wake with the device task (the same instant, so one wake-up), not a little before.
        self._writer_waits = position
        try:
            await self.clock.sleep_until(self._device_time(self._block_end(position)))
        finally:
            self._writer_waits = None

    def _on_played(self, data: bytes) -> None:
        if self._raw is not None:
            self._out += data

    def _hand_on(self) -> None:
        """Write what was played since the last hand-on, in one piece."""
        if self._raw is not None and self._out:
            self._raw.write(bytes(self._out))
            self._out.clear()

    def _on_segment_start(self, offset: int, device_time: float) -> None:
        self._device_wakeup.set()

    async def _stop_device(self) -> None:
        """Stop the device task and hand on the rest (close)."""
        self._device_wakeup.set()
        if self._device_task is not None:
            self._device_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._device_task
        self._hand_on()
        if self._raw is not None:
            self._raw.close()


class ClockedFileSink(_HandOnSink):
    """Records what the device would play: a WAV, one JSON line per segment/item, raw PCM.

    The WAV holds every sample played, back to back (a stopped device adds nothing); the
    timing lines (`segment`, `item`, `segment_end`, `close`) say when each stretch started on
    the monotonic and wall clocks and at which sample offset. With `raw_pcm_path` (a file or
    a FIFO) a device task hands samples on block by block as they play (see `_HandOnSink`).
    """

    def __init__(
        self,
        wav_path: str | os.PathLike[str],
        timing_path: str | os.PathLike[str],
        clock: Clock,
        *,
        raw_pcm_path: str | os.PathLike[str] | None = None,
        sample_rate: int = SAMPLE_RATE,
        buffer_frames: int = 4800,
        period_frames: int = 480,
        hand_on_frames: int = 960,
        output_latency_s: float = 0.0,
    ) -> None:
        super().__init__(
            clock,
            raw_pcm_path=raw_pcm_path,
            hand_on_frames=hand_on_frames,
            sample_rate=sample_rate,
            buffer_frames=buffer_frames,
            period_frames=period_frames,
            output_latency_s=output_latency_s,
        )
        self.wav_path = Path(wav_path)
        self.timing_path = Path(timing_path)
        self._wav: ProgressiveWav | None = None
        self._timing: IO[str] | None = None

    async def _open(self) -> None:
        self._wav = ProgressiveWav(self.wav_path, self.sample_rate)
        self._timing = self.timing_path.open("w", encoding="utf-8")
        self._open_raw()

    def _on_played(self, data: bytes) -> None:
        assert self._wav is not None
        self._wav.append(data)
        super()._on_played(data)

    def _on_segment_start(self, offset: int, device_time: float) -> None:
        super()._on_segment_start(offset, device_time)
        heard = device_time + self._latency_s
        self._log(
            event="segment", sample_offset=offset, start_monotonic=heard,
            start_wall=heard + self._wall_offset,
        )  # fmt: skip

    def _on_segment_end(self, offset: int, device_time: float) -> None:
        heard = device_time + self._latency_s
        self._log(
            event="segment_end", sample_offset=offset, end_monotonic=heard,
            end_wall=heard + self._wall_offset,
        )  # fmt: skip

    def _on_playout(self, playout: Playout) -> None:
        self._log(event="item", **asdict(playout))

    def _log(self, **record: object) -> None:
        """Append one JSON line and flush it, so a crash keeps every line written so far."""
        if self._timing is not None:
            self._timing.write(json.dumps(record) + "\n")
            self._timing.flush()

    async def _close_output(self, *, drained: bool) -> None:
        await self._stop_device()
        self._log(event="close", frames_written=self._accepted, frames_played=self._played)
        for resource in (self._wav, self._timing):
            if resource is not None:
                resource.close()


class RawSink(_HandOnSink):
    """Raw s16le mono handed to a file or a FIFO as the device's sample clock plays it.

    For devices that feed another process and for measuring from outside: a device task
    hands samples on block by block in real time (see `_HandOnSink`). A FIFO is opened
    non-blocking: with no reader (or a slow one) the audio is dropped and counted, the agent
    never blocks, and the next reader is picked up.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        clock: Clock,
        *,
        sample_rate: int = SAMPLE_RATE,
        buffer_frames: int = 4800,
        period_frames: int = 480,
        hand_on_frames: int = 960,
        output_latency_s: float = 0.0,
    ) -> None:
        super().__init__(
            clock,
            raw_pcm_path=path,
            hand_on_frames=hand_on_frames,
            sample_rate=sample_rate,
            buffer_frames=buffer_frames,
            period_frames=period_frames,
            output_latency_s=output_latency_s,
        )
        self.path = Path(path)

    @property
    def dropped_bytes(self) -> int:
        """Bytes dropped because no reader was there or it fell behind."""
        return self.raw_dropped_bytes

    async def _open(self) -> None:
        self._open_raw()

    async def _close_output(self, *, drained: bool) -> None:
        await self._stop_device()


class AlsaSink(PacedSink):
    """A real ALSA output through `aplay` (alsa-utils), fed from the event loop without blocking.

    aplay cannot report the card's play position, so the position is the clock model of
    PacedSink, and writes are paced by it (ALSA's `null` device, which plays instantly, is
    paced the same way). A real card's crystal runs a few tens of ppm off the monotonic clock;
    the difference accumulates in ALSA's buffer until aplay blocks or underruns.
    """

    def __init__(
        self,
        device: str,
        *,
        sample_rate: int = SAMPLE_RATE,
        period_frames: int = 960,
        buffer_frames: int = 4800,
        output_latency_s: float = 0.0,
        clock: Clock | None = None,
        aplay: str = "aplay",
    ) -> None:
        super().__init__(
            clock if clock is not None else SystemClock(),
            sample_rate=sample_rate,
            buffer_frames=buffer_frames,
            period_frames=period_frames,
            output_latency_s=output_latency_s,
        )
        self.device = device
        self._aplay = aplay
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_lines: collections.deque[str] = collections.deque(maxlen=20)
        self._stderr_task: asyncio.Task[None] | None = None
        self.device_underruns = 0

    def _command(self, executable: str) -> list[str]:
        return [
            executable, "-q", "-D", self.device, "-t", "raw", "-f", "S16_LE",
            "-r", str(self.sample_rate), "-c", "1",
            f"--buffer-size={self.buffer_frames}", f"--period-size={self.period_frames}",
            # Start on the first frame written, not when ALSA's buffer is full, so the device
            # starts when the model says it does.
            "--start-delay=1",
        ]  # fmt: skip

    async def _open(self) -> None:
        executable = shutil.which(self._aplay) or shutil.which(self._aplay, path="/usr/bin:/bin")
        if executable is None:
            raise SinkError(
                "The ALSA player 'aplay' is not installed; install the alsa-utils package "
                "(apt-get install alsa-utils)."
            )
        self._process = await asyncio.create_subprocess_exec(
            *self._command(executable),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._stderr_task = asyncio.create_task(self._read_stderr())
        # aplay opens the device before reading audio: a bad device makes it exit at once.
        await asyncio.sleep(0.2)
        if self._process.returncode is not None:
            await self._stderr_task
            raise SinkError(
                f"The sound device {self.device!r} could not be opened.",
                detail="\n".join(self._stderr_lines),
            )

    async def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        async for raw in self._process.stderr:
            line = raw.decode(errors="replace").strip()
            if "underrun" in line:
                self.device_underruns += 1
            self._stderr_lines.append(line)

    async def _on_accepted(self, chunk: Pcm) -> None:
        from audio.pcm import to_bytes  # numpy: loaded by then (chunk is an array)

        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(to_bytes(chunk))
            await self._process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            self._failure = exc
            raise SinkError(
                f"The sound device {self.device!r} stopped accepting audio.",
                detail="\n".join(self._stderr_lines),
            ) from exc

    async def _close_output(self, *, drained: bool) -> None:
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            if drained and process.stdin is not None:
                process.stdin.close()  # end of input: aplay plays its buffer out and exits
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    await process.stdin.wait_closed()
            else:
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=5.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._stderr_task is not None:
            await self._stderr_task


__all__ = [
    "AlsaSink",
    "AudioSink",
    "ClockedFileSink",
    "NullSink",
    "PacedSink",
    "Playout",
    "RawSink",
    "SinkError",
]
