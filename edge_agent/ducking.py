"""Ducking (issue 17): a lower item plays on under an announcement, `duck_db` lower.

The ducked item's reader never stops. Its own segment ramps it down (`Ramp`, ending at the
announcement's first sample) and then hands the reader and its unplayed samples to a `Bed`;
the announcement's segment reads through a `MixReader` (its own audio plus the bed at the
ducked gain); when it stops, the bed's unplayed samples go back into the bed, and the
ducked item's next segment reads on from it with a ramp back up. Gains are a straight line
in dB over the ramp's samples, so every sample's gain depends only on its index: the mix is
sample-accurate and the same whatever the block sizes. The mix plays at the announcement's
volume (a card has one volume): the bed is `duck_db` below its own decoded level.

Clip safety -- the choice. The announcement is never touched: where the bed is silent the
output is bit-identical to the clip. Where the sum would pass full scale, only the bed is
turned down, by a look-ahead limiter: `needed[i]` is the largest bed gain that keeps sample
i within full scale; the applied gain is a moving average (width 2H+1) of a moving minimum
(width 2H+1) of `needed`, so it is never above `needed` at any sample (no clipping, by
construction) yet changes smoothly over 5 ms instead of flattening peaks. A hard clip
would distort the speech; a soft clipper on the sum would change the announcement even
where the bed is silent. The limiter looks 2H samples ahead, which `MixReader` reads ahead
of what it returns, so the output keeps its place on the timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from audio.pcm import SAMPLE_RATE, Pcm, silence

Floats = NDArray[np.float64]
FULL_SCALE = 32767.0
HALF = 120  # H: the limiter's gain moves over 2H+1 samples (5 ms) and looks 2H ahead
HISTORY = 4 * 48_000 // 5  # bed samples kept to hand back (4 read blocks of 200 ms)


def db_gain(db: float) -> float:
    """Linear gain of a level change in dB."""
    return float(10.0 ** (db / 20.0))


@dataclass(frozen=True)
class Ramp:
    """A segment's own gain change: a straight line in dB over `length` samples.

    With `ends_at` (a monotonic instant) the ramp reaches `to_db` at the sample heard then
    (a ramp down before an announcement); without it, it starts at `from_db` on the sample
    before the segment's first, so the first sample is already one step up (a ramp back up).
    """

    length: int
    from_db: float
    to_db: float
    ends_at: float | None = None

    def gains(self, first: int, n: int, *, start_mono: float) -> Floats:
        """Linear gains for the segment's samples first..first+n (segment heard from start_mono)."""
        if self.ends_at is None:
            anchor = -1
        else:
            anchor = round((self.ends_at - start_mono) * SAMPLE_RATE) - self.length
        index = np.arange(first, first + n, dtype=np.float64)
        frac = np.clip((index - anchor) / self.length, 0.0, 1.0)
        return np.asarray(10.0 ** ((self.from_db + (self.to_db - self.from_db) * frac) / 20.0))


def shape(pcm: Pcm, ramps: list[Ramp], first: int, *, start_mono: float) -> Pcm:
    """Apply a segment's ramps (the lowest gain wins where two overlap) to its samples."""
    if not ramps or not len(pcm):
        return pcm
    gain = np.min([r.gains(first, len(pcm), start_mono=start_mono) for r in ramps], axis=0)
    if np.all(gain == 1.0):
        return pcm
    return np.asarray(np.rint(pcm * gain), dtype=np.int16)


def needed_gain(fg: Pcm, bed: Floats) -> Floats:
    """Per sample, the largest gain (0..1) for `bed` that keeps fg + gain*bed within full scale."""
    total = fg + bed
    over = np.abs(total) > FULL_SCALE
    need = np.ones(len(fg))
    if over.any():
        room = FULL_SCALE - np.abs(fg[over].astype(np.float64))
        need[over] = np.clip(room / np.maximum(np.abs(bed[over]), 1e-9), 0.0, 1.0)
    return need


class Mixer:
    """Streaming fg + bed with the bed limited (module doc); output lags input by 2H samples."""

    def __init__(self) -> None:
        self._need = np.ones(2 * HALF)  # needed gains: 2H already output, then the pending
        self._fg = silence(0)
        self._bed: Floats = np.zeros(0)

    @property
    def pending(self) -> int:
        """Input samples taken but not yet output."""
        return len(self._fg)

    def push(self, fg: Pcm, bed: Floats) -> Pcm:
        """Take n samples of each (bed already at its gain); return all that can be output."""
        self._fg = np.concatenate([self._fg, fg])
        self._bed = np.concatenate([self._bed, bed])
        self._need = np.concatenate([self._need, needed_gain(fg, bed)])
        count = len(self._fg) - 2 * HALF
        if count <= 0:
            return silence(0)
        need = self._need[: count + 4 * HALF]
        if np.all(need == 1.0):
            gain = np.ones(count)
        else:
            low = sliding_window_view(need, 2 * HALF + 1).min(axis=1)  # count + 2H values
            gain = sliding_window_view(low, 2 * HALF + 1).mean(axis=1)  # count values
        out = self._fg[:count] + gain * self._bed[:count]
        self._fg, self._bed = self._fg[count:], self._bed[count:]
        self._need = self._need[count:]
        # By construction |out| <= full scale; the clip only guards the float rounding.
        return np.asarray(np.clip(np.rint(out), -32768, 32767), dtype=np.int16)


def mix(fg: Pcm, bed: Pcm, *, gain_db: float) -> Pcm:
    """fg with `bed` at `gain_db` under it, limited (the pure form of what MixReader does)."""
    mixer = Mixer()
    pad = 2 * HALF
    out = mixer.push(fg, bed.astype(np.float64) * db_gain(gain_db))
    tail = mixer.push(silence(pad), np.zeros(pad))
    return np.concatenate([out, tail])[: len(fg)]


class Reader(Protocol):
    """Anything with read(n) -> up to n samples (playback.PcmReader, a Bed, a MixReader)."""

    def read(self, n_samples: int) -> Pcm:
        """Up to n_samples."""
        ...


class Bed:
    """A ducked item's audio stream: handed from its segment to the announcement and back."""

    def __init__(self, item_id: str, *, gain_db: float, ramp: int) -> None:
        self.item_id = item_id
        self.gain_db = gain_db
        self.ramp = ramp  # samples in each ramp
        self.reader: Reader | None = None  # the PcmReader it reads on (None: not handed yet)
        self.root: Reader | None = None  # the item's own reader (relay tally)
        self.root_heard = 0  # samples of root heard before the segment that reads the bed
        self.counted = 0  # of those, the ones already in the relay tally (not under the duck)
        self.position = 0  # item sample of the next sample read() returns
        self._buffer = silence(0)

    def take(self, reader: Reader, rest: Pcm, written: int, *, start_sample: int) -> None:
        """The ducked segment stopped: read on from `reader`, `rest` being its next samples."""
        inner = reader if isinstance(reader, Bed) else None
        self.root = inner.root if inner is not None else reader
        self.root_heard = self.counted = (inner.root_heard if inner is not None else 0) + written
        self.reader, self._buffer = reader, rest
        self.position = start_sample + written

    def unread(self, samples: Pcm, heard: int) -> None:
        """The announcement stopped: these bed samples were read but not heard."""
        self._buffer = np.concatenate([samples, self._buffer])
        self.position -= len(samples)
        self.root_heard += heard

    def silence(self) -> None:
        """The ducked item is gone (removed): play nothing more of it."""
        self.reader, self._buffer = None, silence(0)

    def read(self, n_samples: int) -> Pcm:
        """Up to n_samples (blocking: decodes)."""
        parts, have = [self._buffer[:n_samples]], min(n_samples, len(self._buffer))
        self._buffer = self._buffer[n_samples:]
        while have < n_samples and self.reader is not None:
            more = self.reader.read(n_samples - have)
            if not len(more):
                break
            parts.append(more)
            have += len(more)
        self.position += have
        return np.concatenate(parts)


def padded(pcm: Pcm, n: int) -> Pcm:
    """`pcm` with zeros after it up to n samples."""
    return pcm if len(pcm) >= n else np.concatenate([pcm, silence(n - len(pcm))])


class MixReader:
    """An announcement's samples with the bed mixed under them at its gain (a PcmReader)."""

    def __init__(self, fg: Reader, bed: Bed, *, first: Pcm) -> None:
        self._fg = fg
        self._first = first  # fg samples the segment writer had already read
        self.bed = bed
        self._gain = db_gain(bed.gain_db)
        self._mixer = Mixer()
        self._recent = silence(0)  # raw bed samples of the latest output, to hand back
        self._primed = False

    def _take(self, n: int) -> tuple[Pcm, Pcm]:
        fg = self._first[:n]
        self._first = self._first[n:]
        if len(fg) < n:
            fg = np.concatenate([fg, self._fg.read(n - len(fg))])
        return padded(fg, n), padded(self.bed.read(n), n)

    def read(self, n_samples: int) -> Pcm:
        """Exactly n_samples: the fg pads with silence and the bed plays on to the end."""
        want = n_samples if self._primed else n_samples + 2 * HALF
        self._primed = True
        fg, bed = self._take(want)
        self._recent = np.concatenate([self._recent, bed])[-HISTORY:]
        return self._mixer.push(fg, bed.astype(np.float64) * self._gain)

    def hand_back(self, reader: Reader, rest: Pcm, written: int) -> None:
        """The announcement stopped with `rest` unheard: give the bed back what it was not."""
        unheard = len(rest) + self._mixer.pending
        if unheard > len(self._recent):
            raise RuntimeError("ducking: the bed read further ahead than it keeps")
        self.bed.unread(self._recent[len(self._recent) - unheard :], written)
        self._recent = silence(0)
