"""The simulated acoustic path between a cluster's horns and the microphone on its pole.

The sim's microphone (issue 17) hears what the sink played after it went through a failing
amplifier (`clip_at`), the horns (each with a gain, some dead), a high-frequency loss (a
blown compression driver), the distance to the microphone, the microphone's own gain and
the noise around it. Every fault the acoustic self-test names can be set up here, so each
verdict is tested on real arithmetic. The horns share one delay and add in phase: the
microphone hears their mean, so four horns at 0 dB give unity and one dead horn of four
takes 20*log10(3/4) = -2.5 dB off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

MAX_HORNS = 16
HORN_GAIN_DB = (-60.0, 20.0)
BAND_LOSS_HZ = (50.0, 20_000.0)
BAND_LOSS_DB = (0.0, 80.0)
NOISE_DBFS = (-140.0, 0.0)
CLIP_AT = (1e-4, 1.0)
DELAY_MS = (0.0, 1000.0)
MIC_GAIN_DB = (-60.0, 40.0)
LEVEL_BLOCK = 4800  # samples per step of heard_level_db (100 ms at 48 kHz)
# The loss fades in over half an octave above `band_loss_above_hz`: a real driver rolls off,
# and a brick wall would ring for tens of milliseconds in the measured impulse response.
BAND_LOSS_TRANSITION_OCTAVES = 0.5


@dataclass(frozen=True, slots=True)
class AcousticPath:
    """What stands between the sink's output and the sim microphone; defaults are healthy."""

    horns: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    dead_horns: tuple[int, ...] = ()
    band_loss_above_hz: float | None = None
    band_loss_db: float = 0.0
    noise_dbfs: float | None = -75.0  # a quiet night at the pole plus the mic's own hiss
    clip_at: float | None = None  # amplitude (full scale 1.0) where the amplifier clips
    distance_delay_ms: float = 10.0
    mic_gain_db: float = 0.0
    seed: int = 0  # of the noise: the same path hears the same noise

    def __post_init__(self) -> None:
        object.__setattr__(self, "horns", tuple(float(g) for g in self.horns))
        object.__setattr__(self, "dead_horns", tuple(int(i) for i in self.dead_horns))
        if not 1 <= len(self.horns) <= MAX_HORNS:
            raise ValueError(f"horns: between 1 and {MAX_HORNS} horns, got {len(self.horns)}")
        for i, gain in enumerate(self.horns):
            _check_range(f"horns[{i}]", gain, HORN_GAIN_DB)
        for i in self.dead_horns:
            if not 0 <= i < len(self.horns):
                raise ValueError(f"dead_horns: no horn {i} (horns are 0..{len(self.horns) - 1})")
        if len(set(self.dead_horns)) != len(self.dead_horns):
            raise ValueError("dead_horns: a horn is listed twice")
        if self.band_loss_above_hz is not None:
            _check_range("band_loss_above_hz", self.band_loss_above_hz, BAND_LOSS_HZ)
        _check_range("band_loss_db", self.band_loss_db, BAND_LOSS_DB)
        if self.noise_dbfs is not None:
            _check_range("noise_dbfs", self.noise_dbfs, NOISE_DBFS)
        if self.clip_at is not None:
            _check_range("clip_at", self.clip_at, CLIP_AT)
        _check_range("distance_delay_ms", self.distance_delay_ms, DELAY_MS)
        _check_range("mic_gain_db", self.mic_gain_db, MIC_GAIN_DB)
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed: must be between 0 and 2**63 - 1, got {self.seed}")

    @classmethod
    def from_dict(cls, data: object) -> AcousticPath:
        """A path from its JSON form; unknown keys and out-of-range numbers are a ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"an acoustic path is a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"unknown keys in the acoustic path: {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("horns", "dead_horns"):
                if not isinstance(value, list | tuple):
                    raise ValueError(f"{key}: a list, got {type(value).__name__}")
                as_int = key == "dead_horns"
                kwargs[key] = tuple(_number(f"{key}[{i}]", v, as_int) for i, v in enumerate(value))
            elif key == "seed":
                kwargs[key] = _number(key, value, True)
            elif value is None and key in ("band_loss_above_hz", "noise_dbfs", "clip_at"):
                kwargs[key] = None
            else:
                kwargs[key] = _number(key, value, False)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form `from_dict` reads back."""
        return {
            "horns": list(self.horns),
            "dead_horns": list(self.dead_horns),
            "band_loss_above_hz": self.band_loss_above_hz,
            "band_loss_db": self.band_loss_db,
            "noise_dbfs": self.noise_dbfs,
            "clip_at": self.clip_at,
            "distance_delay_ms": self.distance_delay_ms,
            "mic_gain_db": self.mic_gain_db,
            "seed": self.seed,
        }


def hear(path: AcousticPath, played: NDArray[np.floating], sample_rate: int) -> NDArray[np.float32]:
    """What the microphone records while `played` (mono, full scale 1.0) goes out, and after.

    The recording starts with the playback and lasts len(played) plus the path's delay.
    """
    signal = _through(path, played, sample_rate)
    delay = round(path.distance_delay_ms * sample_rate / 1000.0)
    heard = np.concatenate([np.zeros(delay), signal])
    if path.noise_dbfs is not None:
        rng = np.random.default_rng(path.seed)
        heard += rng.standard_normal(len(heard)) * 10.0 ** (path.noise_dbfs / 20.0)
    return heard.astype(np.float32)


def heard_level_db(path: AcousticPath, played: NDArray[np.floating], sample_rate: int) -> float:
    """The RMS level (dBFS) of what hear() records of `played`, with the noise at its mean power.

    For level checks (the silence watcher's horn check): no noise is drawn, so numpy.random
    is not loaded and no recording-sized arrays are made beyond the path's own arithmetic.
    """
    x = np.asarray(played)
    # A block at a time (temporaries of LEVEL_BLOCK samples, not of the window) unless the
    # high-frequency loss needs the whole spectrum.
    lossy = path.band_loss_above_hz is not None and path.band_loss_db > 0
    block = max(len(x), 1) if lossy else LEVEL_BLOCK
    energy = 0.0
    for at in range(0, max(len(x), 1), block):
        signal = _through(path, x[at : at + block], sample_rate)
        energy += float(np.dot(signal, signal))
    n = len(x) + round(path.distance_delay_ms * sample_rate / 1000.0)
    power = energy / n if n else 0.0
    if path.noise_dbfs is not None:
        power += 10.0 ** (path.noise_dbfs / 10.0)  # unit-variance noise scaled to noise_dbfs
    return 10.0 * math.log10(power) if power > 0 else -math.inf


def _through(
    path: AcousticPath, played: NDArray[np.floating], sample_rate: int
) -> NDArray[np.float64]:
    """`played` after the amplifier, the horns, the high-frequency loss and the mic's gain."""
    if not 8000 <= sample_rate <= 192_000:
        raise ValueError(f"sample_rate must be 8000..192000 Hz, got {sample_rate}")
    x = np.asarray(played)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"played must be 1-D float samples, got {x.dtype} of shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("played holds NaN or infinity")
    signal = x.astype(np.float64)
    if path.clip_at is not None:
        signal = np.clip(signal, -path.clip_at, path.clip_at)
    live = [10.0 ** (g / 20.0) for i, g in enumerate(path.horns) if i not in path.dead_horns]
    signal *= sum(live) / len(path.horns) * 10.0 ** (path.mic_gain_db / 20.0)
    if path.band_loss_above_hz is not None and path.band_loss_db > 0 and signal.any():
        signal = _high_loss(signal, sample_rate, path.band_loss_above_hz, path.band_loss_db)
    return signal


def _high_loss(
    signal: NDArray[np.float64], sample_rate: int, above_hz: float, loss_db: float
) -> NDArray[np.float64]:
    """`signal` with `loss_db` taken off above `above_hz` (zero phase, FFT domain)."""
    n = len(signal)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    # A raised-cosine in log frequency: no loss at `above_hz`, all of it half an octave higher.
    where = np.clip(
        np.log2(np.maximum(freqs, 1e-9) / above_hz) / BAND_LOSS_TRANSITION_OCTAVES, 0, 1
    )
    shape = 0.5 - 0.5 * np.cos(np.pi * where)
    gain = 10.0 ** (-loss_db * shape / 20.0)
    return np.fft.irfft(np.fft.rfft(signal) * gain, n)


def _check_range(name: str, value: float, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name}: must be between {low:g} and {high:g}, got {value!r}")


def _number(name: str, value: object, as_int: bool) -> float:
    """A JSON number (not a boolean, not a string); an int when `as_int`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: a number, got {type(value).__name__}")
    if as_int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{name}: a whole number, got {value!r}")
        return int(value)
    return float(value)
