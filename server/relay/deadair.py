"""Dead air on a relayed source: silent or gone for too long, and back after a stretch of audio.

Pure: it is fed each frame's audio (None when the source had nothing) with the frame's time,
or reads an injected clock, and says whether the relay is on the air. No I/O, no asyncio.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from audio.pcm import Pcm

FULL_SCALE = 32768.0  # s16
RECOVER_S = 1.0  # audio again for this long ends a dead-air stretch
EPSILON_S = 1e-6  # frame times are sums of 20 ms steps: 5.0 s may come out as 4.999999


def level_dbfs(pcm: Pcm) -> float:
    """RMS level of s16 samples in dBFS (-inf for digital silence or no samples)."""
    if not len(pcm):
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(pcm.astype(np.float64)))))
    return -math.inf if rms <= 0 else 20 * math.log10(rms / FULL_SCALE)


@dataclass(frozen=True)
class Change:
    """A change of state: `dead` True when dead air began (at `since`), False when it ended."""

    dead: bool
    since: float  # dead: when the audio stopped; back: when it came back for good
    at: float  # when the detector decided
    gone: bool  # dead: the source had nothing at all (rather than quiet audio)


class DeadAirDetector:
    """Silent (below `silence_dbfs`) or gone for more than `dead_after_s`: dead air."""

    def __init__(
        self,
        *,
        dead_after_s: float,
        silence_dbfs: float,
        recover_s: float = RECOVER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dead_after_s = dead_after_s
        self.silence_dbfs = silence_dbfs
        self.recover_s = recover_s
        self.clock = clock
        self.dead = False
        self.dead_since: float | None = None  # start of the current dead-air stretch
        self.gone = False  # the quiet stretch was (mostly) the source having nothing
        self._quiet_since: float | None = None
        self._quiet_frames = 0
        self._gone_frames = 0
        self._audible_since: float | None = None

    def audible(self, pcm: Pcm | None) -> bool:
        """True when the frame carries sound above the silence level."""
        return pcm is not None and level_dbfs(pcm) >= self.silence_dbfs

    def feed(self, pcm: Pcm | None, now: float | None = None) -> Change | None:
        """Take one frame's audio; the change of state it caused, if any."""
        at = self.clock() if now is None else now
        if self.audible(pcm):
            return self._heard(at)
        return self._quiet(at, gone=pcm is None)

    @property
    def on_air(self) -> bool:
        """False during dead air: frames should not be sent."""
        return not self.dead

    def _heard(self, at: float) -> Change | None:
        self._quiet_since = None
        self._quiet_frames = self._gone_frames = 0
        if not self.dead:
            return None
        if self._audible_since is None:
            self._audible_since = at
        if at - self._audible_since < self.recover_s - EPSILON_S:
            return None
        since = self._audible_since
        self.dead, self.dead_since, self._audible_since = False, None, None
        return Change(dead=False, since=since, at=at, gone=False)

    def _quiet(self, at: float, *, gone: bool) -> Change | None:
        self._audible_since = None  # recovery needs audio without a gap
        if self._quiet_since is None:
            self._quiet_since = at
        self._quiet_frames += 1
        self._gone_frames += gone
        if self.dead or at - self._quiet_since < self.dead_after_s - EPSILON_S:
            return None
        self.dead, self.dead_since = True, self._quiet_since
        self.gone = self._gone_frames * 2 > self._quiet_frames
        return Change(dead=True, since=self._quiet_since, at=at, gone=self.gone)
