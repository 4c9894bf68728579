"""Jitter buffer and playout scheduler for live frames; pure: every call is told the time.

Frames arrive as (seq, server-clock capture time, payload). Frame `n` must reach the output
device at `capture_n + playout_delay - output_latency` (server clock), so that it is heard at
`capture_n + playout_delay` on every device alike. The caller repeatedly asks `pull(now=...)`
for the next chunk to write, where `now` is the server-clock instant at which the device will
consume the first sample of that chunk. The buffer answers with audio aligned to the sample:

* the first sample: exactly at its instant, whether early (silence up to it) or late (the
  stream is entered that far in), so every device starts aligned;
* off by more than `jump_s` (a few ms: the clock estimate moved, a stall, a sink that ran
  dry): one step at once -- silence inserted when early, audio skipped when late;
* slightly off (clock drift between the device's sample clock and the server clock):
  one sample inserted or dropped at most every 10 ms, by averaging neighbours (inaudible).
  Sliding is for drift only: at 2 ms/s a 30 ms error would take 15 s to close.

A live receiver loops: `pcm = buffer.pull(now=server_now(sink.next_sample_monotonic()))`,
then `await sink.write(pcm)`; the sink's pacing sets the rhythm.

Capture times are read as a regular timeline (seq x frame duration from the first frame),
slowly corrected by the stamps themselves, so stamping jitter does not reach the output.

numpy is imported by the functions that make audio, not with the module: an idle edge agent
imports this one, and a buffer takes frames before its first `pull`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from audio.pcmformat import FRAME_SAMPLES, SAMPLE_RATE

if TYPE_CHECKING:
    from audio.pcm import Pcm

# Weight of each new capture stamp in the timeline correction (about 64 frames of memory).
_STAMP_SMOOTHING = 1.0 / 64.0
_STEP_FRAMES = 3
_STEP_AGREE_S = 0.0005


class Arrival(Enum):
    """What `push` did with a frame."""

    ACCEPTED = "accepted"
    REORDERED = "reordered"  # accepted, but it came after a later frame
    DUPLICATE = "duplicate"
    LATE = "late"  # its slot was already played (or concealed)
    FUTURE = "future"  # absurdly far ahead: ignored, nothing allocated


@dataclass
class JitterStats:
    """Counters since the buffer was created."""

    received: int = 0
    played: int = 0
    concealed: int = 0
    late: int = 0
    dropped_future: int = 0
    reordered: int = 0
    duplicates: int = 0
    skipped: int = 0  # frames jumped over when far behind
    inserted_samples: int = 0
    dropped_samples: int = 0
    resyncs: int = 0


class JitterBuffer:
    """Reorder live frames and hand out sample-aligned audio for the device (see module doc)."""

    def __init__(
        self,
        *,
        decode: Callable[[bytes | None], Pcm],
        playout_delay_s: float,
        output_latency_s: float = 0.0,
        frame_samples: int = FRAME_SAMPLES,
        sample_rate: int = SAMPLE_RATE,
        max_ahead_s: float = 10.0,
        tolerance_s: float = 0.0002,
        resync_s: float = 0.06,
        jump_s: float = 0.003,
        correction_interval_s: float = 0.010,
    ) -> None:
        self.stats = JitterStats()
        self._decode = decode
        self._frame = frame_samples
        self._rate = sample_rate
        self._frame_s = frame_samples / sample_rate
        self._lead_s = playout_delay_s - output_latency_s
        self._max_ahead = max(1, math.ceil(max_ahead_s / self._frame_s))
        self._tolerance_s = tolerance_s
        self._resync_s = resync_s  # stamps further off the timeline than this are outliers
        self._jump_s = jump_s
        self._max_corrections = max(1, round(self._frame_s / correction_interval_s))
        self._frames: dict[int, bytes] = {}
        self._highest_seq: int | None = None
        self._anchor: tuple[int, float] | None = None  # (seq, capture time) of the first frame
        self._stamp_residual = 0.0
        self._steps: list[float] = []  # residuals of recent stamps far off the timeline
        # Read cursor: frame `_seq`, sample `_offset` in it; `_current` is its decoded audio.
        self._seq: int | None = None
        self._offset = 0
        self._current: Pcm | None = None
        self._aligned = False
        self.error_s: float | None = None  # last `now - due time` of the cursor (+ = late)

    @property
    def buffered(self) -> int:
        """Frames waiting to be played."""
        return len(self._frames)

    def push(self, seq: int, capture_time: float, payload: bytes, *, now: float) -> Arrival:
        """Store a received frame unless it is late, a duplicate or absurdly far ahead."""
        self.stats.received += 1
        if self._seq is not None:
            absurd = seq - self._seq > self._max_ahead
        else:  # not playing yet: judge by the first frame, either way
            absurd = self._anchor is not None and abs(seq - self._anchor[0]) > self._max_ahead
        if absurd:
            self.stats.dropped_future += 1
            return Arrival.FUTURE
        if self._seq is not None and (
            seq < self._seq or (seq == self._seq and self._current is not None)
        ):
            self.stats.late += 1
            return Arrival.LATE
        if seq in self._frames:
            self.stats.duplicates += 1
            return Arrival.DUPLICATE
        self._frames[seq] = payload
        self._learn_stamp(seq, capture_time)
        if self._highest_seq is not None and seq < self._highest_seq:
            self.stats.reordered += 1
            return Arrival.REORDERED
        self._highest_seq = seq
        return Arrival.ACCEPTED

    def pull(self, *, now: float) -> Pcm:
        """Audio for the device from server-clock instant `now` on: to the end of a frame."""
        from audio.pcm import silence  # numpy: loads with the first pull, not at idle

        seq = self._seq if self._seq is not None else self._first_seq()
        if seq is None:
            return silence(self._frame)  # nothing received yet
        error = now - self._due_time(seq, self._offset)
        self.error_s = error
        if error < -self._jump_s or (not self._aligned and error * self._rate < -0.5):
            # Early: play silence exactly up to the instant the stream is due. Until then the
            # first frame is not chosen, so an earlier one arriving late can still lead.
            if self._aligned:
                self.stats.resyncs += 1
                self._aligned = False
            return silence(min(self._frame, round(-error * self._rate)))
        self._seq = seq
        if error > self._jump_s or (not self._aligned and error * self._rate > 0.5):
            if self._aligned:
                self.stats.resyncs += 1
            self._skip(round(error * self._rate))
            error = now - self._due_time(self._seq, self._offset)
            self.error_s = error
        self._aligned = True
        # Up to the end of the current frame, never into the next: a pull that straddled two
        # frames would need the next one a whole frame before its first sample is due (with
        # 40 ms frames, more than a 200 ms playout delay leaves after the sender's lead).
        rest = self._frame - self._offset
        corrections = 0
        excess = abs(error) - self._tolerance_s
        if excess > 0:
            corrections = min(self._max_corrections, rest // 4, math.ceil(excess * self._rate))
        pcm = self._take(rest)
        if corrections and error > 0:
            self.stats.dropped_samples += corrections
            return _drop_samples(pcm, corrections)
        if corrections:
            self.stats.inserted_samples += corrections
            return _insert_samples(pcm, corrections)
        return pcm

    def _first_seq(self) -> int | None:
        """Lowest buffered sequence number before playout starts."""
        return min(self._frames) if self._frames else None

    def _learn_stamp(self, seq: int, capture_time: float) -> None:
        """Fold one capture stamp into the timeline (see the class doc).

        Jittery stamps are smoothed and outliers (> resync) ignored; a step (the sender
        re-measured how old its audio is: _STEP_FRAMES stamps in a row agreeing on a new
        offset to within _STEP_AGREE_S) is taken at once, so every device takes it alike.
        """
        if self._anchor is None:
            self._anchor = (seq, capture_time)
            return
        expected = self._anchor[1] + (seq - self._anchor[0]) * self._frame_s
        residual = capture_time - expected
        delta = residual - self._stamp_residual
        if abs(delta) > self._jump_s:
            self._steps.append(residual)
            del self._steps[:-_STEP_FRAMES]
            if len(self._steps) >= _STEP_FRAMES:
                recent = self._steps[-_STEP_FRAMES:]
                if max(recent) - min(recent) < _STEP_AGREE_S:
                    self._stamp_residual = residual
                    self._steps.clear()
                    return
        else:
            self._steps.clear()
        if abs(delta) < self._resync_s:
            self._stamp_residual += delta * _STAMP_SMOOTHING

    def _due_time(self, seq: int, offset: int) -> float:
        """Server-clock instant sample `offset` of frame `seq` must reach the device."""
        assert self._anchor is not None
        anchor_seq, anchor_time = self._anchor
        return (
            anchor_time
            + self._stamp_residual
            + self._lead_s
            + (seq - anchor_seq) * self._frame_s
            + offset / self._rate
        )

    def _take(self, n_samples: int) -> Pcm:
        """The next `n_samples` of the stream, decoding (or concealing) frames as needed."""
        import numpy as np  # loaded by pull

        from audio.pcm import silence

        assert self._seq is not None
        if n_samples == self._frame and self._offset == 0 and self._current is None:
            # The usual case, a whole frame: hand the decoded frame itself on, no copy.
            frame = self._decode_next()
            self._seq += 1
            return frame
        parts: list[Pcm] = []
        while n_samples > 0:
            if self._current is None:
                self._current = self._decode_next()
            piece = self._current[self._offset : self._offset + n_samples]
            parts.append(piece)
            n_samples -= len(piece)
            self._offset += len(piece)
            if self._offset >= self._frame:
                self._seq, self._offset, self._current = self._seq + 1, 0, None
        return np.concatenate(parts) if parts else silence(0)

    def _decode_next(self) -> Pcm:
        """Decode (or conceal) frame `_seq`, fitted to the frame length."""
        from audio.pcm import as_pcm  # numpy: loaded by pull

        assert self._seq is not None
        payload = self._frames.pop(self._seq, None)
        if payload is None:
            self.stats.concealed += 1
        else:
            self.stats.played += 1
        return _fit(as_pcm(self._decode(payload)), self._frame)

    def _skip(self, n_samples: int) -> None:
        """Jump the cursor `n_samples` ahead; whole frames are dropped without decoding."""
        assert self._seq is not None
        while n_samples > 0:
            if self._offset == 0 and self._current is None and n_samples >= self._frame:
                if self._frames.pop(self._seq, None) is not None:
                    self.stats.skipped += 1
                self._seq += 1
                n_samples -= self._frame
            else:
                n_samples -= len(self._take(min(n_samples, self._frame - self._offset)))


def _fit(pcm: Pcm, length: int) -> Pcm:
    """Pad or cut a decoded frame to the frame length, so the timeline never slips."""
    import numpy as np  # loaded by pull

    from audio.pcm import silence

    if len(pcm) == length:
        return pcm
    if len(pcm) > length:
        return pcm[:length]
    return np.concatenate([pcm, silence(length - len(pcm))])


def _drop_samples(pcm: Pcm, count: int) -> Pcm:
    """Remove `count` samples spread evenly, each by merging two neighbours into their mean."""
    import numpy as np  # loaded by pull

    out = pcm.astype(np.int32)
    keep = np.ones(len(out), dtype=bool)
    for k in range(count):
        i = (2 * k + 1) * len(out) // (2 * count) - 1
        out[i] = (out[i] + out[i + 1]) // 2
        keep[i + 1] = False
    return out[keep].astype(np.int16)


def _insert_samples(pcm: Pcm, count: int) -> Pcm:
    """Add `count` samples spread evenly, each the mean of its two neighbours."""
    import numpy as np  # loaded by pull

    src = pcm.astype(np.int32)
    positions = [(2 * k + 1) * len(src) // (2 * count) for k in range(count)]
    means = [(src[p - 1] + src[p]) // 2 for p in positions]
    return np.insert(src, positions, means).astype(np.int16)
