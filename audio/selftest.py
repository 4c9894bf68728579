"""The acoustic self-test (issue 17): play a sweep, record it on the pole, judge the horns.

The test signal is an exponential sine sweep (Farina) after a stretch of silence. The
recording is deconvolved with the sweep's regularised spectral inverse (Kirkeby: exact inside
the band, tapered to nothing outside it), which is a cross-correlation with a whitened sweep:
the largest peak gives the capture latency, and around it lies the linear impulse response of
amplifier, horns and air. Harmonic distortion of order k lands L*ln(k) seconds before it
(L = sweep length / ln(f2/f1)), so it is measured apart from the linear part. From these come
the figures: the level and the octave-band response (from the linear part), a distortion
figure (harmonic energy against linear energy), the noise floor (from the leading silence).
A verdict compares them with the figures recorded at commissioning (the baseline).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audio.signals import fast_fft_len

SWEEP_LOW_HZ = 100.0
SWEEP_HIGH_HZ = 10_000.0
BAND_CENTRES_HZ = (125, 250, 500, 1000, 2000, 4000, 8000)
LEAD_S = 0.5  # silence before the sweep: the noise floor is measured in it
TAIL_S = 0.5  # silence after it: the last of the sound (and of the latency) arrives
MAX_LATENCY_S = 0.5  # the capture path's delay the analysis searches; record this much longer
MAX_EXTRA_S = 10.0  # a recording longer than signal + latency + this is a caller's mistake
SWEEP_S = (1.0, 10.0)  # shorter puts the 2nd harmonic too close to the linear response
FADE_IN_S = 0.03  # three periods of the lowest frequency: no click, little low-end ripple
FADE_OUT_S = 0.005
# The inverse rises from nothing at the sweep's ends to one a third of an octave inside; band
# levels are read only where it is one. A softer edge rings for less time in the response.
TAPER_OCTAVES = 1.0 / 3.0
REGULARISATION = 1e-6  # of the sweep's peak power density: negligible inside the band
LINEAR_WINDOW_S = (-0.06, 0.15)  # the band edges ring on both sides of the pulse
HARMONICS = (2, 3, 4, 5)
HARMONIC_WINDOW_S = (-0.005, 0.02)  # around each harmonic's pulse: clear of its neighbours
NOISE_REGION_S = (0.2, 0.45)  # of the impulse response: after the sound, before the tail ends
NOISE_GUARD_S = 0.02  # of the leading silence left out before the sweep's arrival
MAX_ABS_SAMPLE = 16.0  # float samples beyond +24 dBFS are not audio scaled to full scale 1.0
FLOOR_DB = -200.0  # instead of -inf for an energy of zero, so every figure stays JSON

# Below a 24-bit converter's own noise: such a recording carries nothing from a microphone.
FLAT_DBFS = -120.0
# A 2 s sweep lifts its pulse ~45 dB above a quiet noise floor; pure noise scores 0 +- 0.5 dB.
DETECT_SNR_DB = 10.0
# 30 dB below commissioning: nobody in the village hears that cluster any more.
SILENT_DROP_DB = 30.0
# One dead horn of four (-2.5 dB) is within what weather and wind move; two dead (-6 dB) not.
LEVEL_LOW_DB = 5.0
# A blown compression driver takes 15-30 dB off above its crossover; a wet horn or a healthy
# rerun moves a band by a dB or two. Measured against the low and mid bands' own change, so a
# quieter cluster (a dead horn) is not a high-frequency loss.
HIGH_LOSS_DB = 10.0
# A clean path scores well under 1 %; an amplifier clipping the top 20 % of the sweep's peak
# scores ~9 %, clipping half of it ~23 %. Real horns have a few % of their own, recorded in the
# baseline, so both a rise over the baseline and an absolute level are required.
DISTORTION_RISE_PCT = 5.0
DISTORTION_MIN_PCT = 8.0
# Below this the harmonic windows hold mostly noise and the figure wanders (to ~9 % at 10 dB):
# it is not judged then.
DISTORTION_SNR_DB = 20.0
# Ambient noise at a pole changes by ~10 dB between hours (motorbikes, wind, rain); a rise
# beyond this is a hum, a buzzing amplifier or a noise source worth a visit.
NOISE_RISE_DB = 15.0
# A level change this large is worth a line in the reasons even when the verdict is fine.
LEVEL_NOTE_DB = 1.5

VIETNAMESE = {
    "ok": "bình thường",
    "level_low": "yếu tiếng",
    "silent": "không có âm thanh",
    "high_loss": "mất dải cao",
    "distorted": "méo tiếng",
    "noisy": "ồn nền cao",
    "no_signal_input": "micro không thu được tín hiệu",
    "baseline": "lần đo đầu tiên: lưu làm mốc",
}
_LOW_MID_BANDS = (250, 500, 1000)
_HIGH_BANDS = (2000, 4000, 8000)
_FIGURE_KEYS = (
    "level_db",
    "bands_db",
    "noise_floor_dbfs",
    "distortion_pct",
    "snr_db",
    "latency_ms",
)


@dataclass(frozen=True, slots=True, eq=False)
class TestSignal:
    """The played samples (float32 mono, full scale 1.0) and what the analysis needs of them."""

    __test__ = False  # not a pytest class, whatever its name

    samples: NDArray[np.float32]
    sample_rate: int
    sweep_s: float
    level_dbfs: float  # the sweep's peak
    lead_s: float = LEAD_S
    tail_s: float = TAIL_S
    low_hz: float = SWEEP_LOW_HZ
    high_hz: float = SWEEP_HIGH_HZ

    @property
    def rate_constant_s(self) -> float:
        """Farina's L: the sweep's frequency grows by a factor e every L seconds."""
        return self.sweep_s / math.log(self.high_hz / self.low_hz)

    @property
    def record_s(self) -> float:
        """How long to record from the start of playback: the signal plus the latency searched."""
        return len(self.samples) / self.sample_rate + MAX_LATENCY_S


@dataclass(frozen=True, slots=True)
class Figures:
    """One run's numbers; the baseline is a stored Figures."""

    level_db: float  # path gain, recorded against played: power mean of the octave bands
    bands_db: tuple[float, ...]  # per BAND_CENTRES_HZ, same reference
    noise_floor_dbfs: float  # RMS of the leading silence
    # Harmonics 2-5 against the linear response, in energy: THD-like, comparable between runs
    # of the same signal, not a calibrated THD; noise alone when snr_db < DETECT_SNR_DB.
    distortion_pct: float
    snr_db: float  # the linear response over the impulse response's noise
    latency_ms: float  # of the capture path, playback start to the pulse

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict `from_dict` reads back."""
        return {
            "level_db": self.level_db,
            "bands_db": {
                str(hz): db for hz, db in zip(BAND_CENTRES_HZ, self.bands_db, strict=True)
            },
            "noise_floor_dbfs": self.noise_floor_dbfs,
            "distortion_pct": self.distortion_pct,
            "snr_db": self.snr_db,
            "latency_ms": self.latency_ms,
        }

    @classmethod
    def from_dict(cls, data: object) -> Figures:
        """Figures from their JSON form (a stored baseline); anything off is a ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"figures are a JSON object, got {type(data).__name__}")
        missing = [k for k in _FIGURE_KEYS if k not in data]
        unknown = sorted(str(k) for k in data if k not in _FIGURE_KEYS)
        if missing or unknown:
            raise ValueError(f"figures: missing keys {missing}, unknown keys {unknown}")
        bands = data["bands_db"]
        names = [str(hz) for hz in BAND_CENTRES_HZ]
        if not isinstance(bands, dict) or sorted(bands) != sorted(names):
            raise ValueError(f"figures: bands_db must map exactly {', '.join(names)} to dB")
        values = {k: _finite(k, data[k]) for k in _FIGURE_KEYS if k != "bands_db"}
        return cls(
            level_db=values["level_db"],
            bands_db=tuple(_finite(f"bands_db[{n}]", bands[n]) for n in names),
            noise_floor_dbfs=values["noise_floor_dbfs"],
            distortion_pct=values["distortion_pct"],
            snr_db=values["snr_db"],
            latency_ms=values["latency_ms"],
        )


@dataclass(frozen=True, slots=True)
class Result:
    """The verdict of one run, its figures (None when the microphone gave nothing) and why."""

    verdict: str
    vietnamese: str
    figures: Figures | None
    level_vs_baseline_db: float | None
    reasons: tuple[str, ...]
    analysis_ms: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "verdict": self.verdict,
            "vietnamese": self.vietnamese,
            "figures": None if self.figures is None else self.figures.to_dict(),
            "level_vs_baseline_db": self.level_vs_baseline_db,
            "reasons": list(self.reasons),
            "analysis_ms": self.analysis_ms,
        }


def test_signal(
    *,
    sample_rate: int = 48_000,
    seconds: float = 2.0,
    level_dbfs: float = -20.0,
) -> TestSignal:
    """LEAD_S of silence, a log sweep 100 Hz-10 kHz of `seconds` peaking at `level_dbfs`, TAIL_S."""
    if not 32_000 <= sample_rate <= 192_000:  # the sweep's 10 kHz needs room below Nyquist
        raise ValueError(f"sample_rate must be 32000..192000 Hz, got {sample_rate}")
    if not SWEEP_S[0] <= seconds <= SWEEP_S[1]:
        raise ValueError(f"the sweep lasts {SWEEP_S[0]:g}..{SWEEP_S[1]:g} s, got {seconds}")
    if not -60.0 <= level_dbfs <= -1.0:
        raise ValueError(f"level_dbfs must be -60..-1, got {level_dbfs}")
    n = round(seconds * sample_rate)
    rate = seconds / math.log(SWEEP_HIGH_HZ / SWEEP_LOW_HZ)
    t = np.arange(n) / sample_rate
    sweep = np.sin(2.0 * np.pi * SWEEP_LOW_HZ * rate * np.expm1(t / rate))
    for length, at_start in (
        (round(FADE_IN_S * sample_rate), True),
        (round(FADE_OUT_S * sample_rate), False),
    ):
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, length))
        if at_start:
            sweep[:length] *= ramp
        else:
            sweep[n - length :] *= ramp[::-1]
    sweep *= 10.0 ** (level_dbfs / 20.0)
    lead = np.zeros(round(LEAD_S * sample_rate))
    tail = np.zeros(round(TAIL_S * sample_rate))
    samples = np.concatenate([lead, sweep, tail]).astype(np.float32)
    return TestSignal(
        samples=samples, sample_rate=sample_rate, sweep_s=seconds, level_dbfs=level_dbfs
    )


def analyse(signal: TestSignal, recorded: object, *, baseline: Figures | None) -> Result:
    """Figures and a verdict for `recorded` (mono, starting with playback, record_s long)."""
    started = time.perf_counter()
    rec = _as_recording(recorded, signal)
    if _dbfs(float(np.std(rec))) < FLAT_DBFS:
        reason = "Micro chỉ trả về một giá trị không đổi (thường là số 0): kiểm tra micro, dây nối"
        return _result("no_signal_input", None, baseline, [reason], started)
    figures = _figures(signal, rec - float(np.mean(rec)))
    verdict, reasons = _judge(figures, baseline)
    return _result(verdict, figures, baseline, reasons, started)


def _as_recording(recorded: object, signal: TestSignal) -> NDArray[np.float64]:
    """The recording as float64 full scale 1.0, or a ValueError saying what is wrong with it."""
    if not isinstance(recorded, np.ndarray):
        raise ValueError(f"the recording must be a numpy array, got {type(recorded).__name__}")
    if recorded.ndim != 1:
        raise ValueError(f"the recording must be mono (1-D), got shape {recorded.shape}")
    if recorded.size == 0:
        raise ValueError("the recording is empty")
    if recorded.dtype in (np.float32, np.float64):
        rec = recorded.astype(np.float64)
        if not np.all(np.isfinite(rec)):
            raise ValueError("the recording holds NaN or infinity")
        if float(np.max(np.abs(rec))) > MAX_ABS_SAMPLE:
            raise ValueError("the recording is not audio scaled to full scale 1.0")
    elif recorded.dtype in (np.int16, np.int32):
        rec = recorded.astype(np.float64) / float(np.iinfo(recorded.dtype).max + 1)
    else:
        raise ValueError(
            f"the recording must be float32, float64, int16 or int32, not {recorded.dtype}"
        )
    needed = len(signal.samples) - round(signal.tail_s * signal.sample_rate)
    if len(rec) > len(signal.samples) + round((MAX_LATENCY_S + MAX_EXTRA_S) * signal.sample_rate):
        raise ValueError(
            f"the recording is too long: {len(rec) / signal.sample_rate:.1f} s "
            f"for a {signal.record_s:.2f} s test"
        )
    if len(rec) < needed:
        raise ValueError(
            f"the recording is too short: {len(rec) / signal.sample_rate:.2f} s, "
            f"needs at least {needed / signal.sample_rate:.2f} s ({signal.record_s:.2f} s advised)"
        )
    return rec


def _figures(signal: TestSignal, rec: NDArray[np.float64]) -> Figures:
    """Deconvolve, align, and measure."""
    sr = signal.sample_rate
    played = signal.samples.astype(np.float64)
    n = fast_fft_len(len(rec) + len(played))
    inverse = _inverse(played, n, sr, signal.low_hz, signal.high_hz)
    ir = np.fft.irfft(np.fft.rfft(rec, n) * inverse, n)
    # The sweep must lie whole in the recording; the peak is searched up to MAX_LATENCY_S.
    max_lag = min(round(MAX_LATENCY_S * sr), len(rec) - (len(played) - round(signal.tail_s * sr)))
    lag = int(np.argmax(np.abs(ir[: max_lag + 1])))

    def segment(window: tuple[float, float]) -> NDArray[np.float64]:
        start, stop = (lag + round(s * sr) for s in window)
        return ir[np.arange(start, stop) % n]

    noise_per_sample = float(np.mean(segment(NOISE_REGION_S) ** 2))
    linear = segment(LINEAR_WINDOW_S)
    expected_noise = noise_per_sample * len(linear)
    # Noise alone scores about 0 dB here; the noise's share is then taken off the energy.
    snr_db = _db(float(np.sum(linear**2)) / expected_noise) if expected_noise > 0 else -FLOOR_DB
    linear_energy = max(float(np.sum(linear**2)) - expected_noise, 0.0)

    harmonic_energy = 0.0
    for k in HARMONICS:
        at = -signal.rate_constant_s * math.log(k)
        part = segment((at + HARMONIC_WINDOW_S[0], at + HARMONIC_WINDOW_S[1]))
        harmonic_energy += max(float(np.sum(part**2)) - noise_per_sample * len(part), 0.0)
    distortion = 100.0 * math.sqrt(harmonic_energy / linear_energy) if linear_energy > 0 else 0.0

    bands = _bands(linear, sr, exact=_flat_edges(signal))
    level = _db(float(np.mean([10.0 ** (b / 10.0) for b in bands])))

    silence = rec[lag : lag + round((signal.lead_s - NOISE_GUARD_S) * sr)]
    noise_floor = _dbfs(float(np.sqrt(np.mean((silence - np.mean(silence)) ** 2))))
    return Figures(
        level_db=_tidy(level, 2),
        bands_db=tuple(_tidy(b, 2) for b in bands),
        noise_floor_dbfs=_tidy(noise_floor, 2),
        distortion_pct=_tidy(distortion, 3),
        snr_db=_tidy(snr_db, 2),
        latency_ms=_tidy(lag / sr * 1000.0, 2),
    )


def _inverse(
    played: NDArray[np.float64], n: int, sr: int, low_hz: float, high_hz: float
) -> NDArray[np.complex128]:
    """The played signal's regularised inverse spectrum for an FFT of length n."""
    spectrum = np.fft.rfft(played, n)
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    octaves = np.log2(np.maximum(freqs, 1e-9))
    rise = np.clip((octaves - math.log2(low_hz)) / TAPER_OCTAVES, 0.0, 1.0)
    fall = np.clip((math.log2(high_hz) - octaves) / TAPER_OCTAVES, 0.0, 1.0)
    weight = (0.5 - 0.5 * np.cos(np.pi * rise)) * (0.5 - 0.5 * np.cos(np.pi * fall))
    power = np.abs(spectrum) ** 2
    inverse: NDArray[np.complex128] = (
        np.conj(spectrum) * weight / (power + REGULARISATION * float(np.max(power)))
    )
    return inverse


def _flat_edges(signal: TestSignal) -> tuple[float, float]:
    """The frequencies between which the inverse is exact (its taper is one)."""
    factor = 2.0**TAPER_OCTAVES
    return signal.low_hz * factor, signal.high_hz / factor


def _bands(linear: NDArray[np.float64], sr: int, *, exact: tuple[float, float]) -> list[float]:
    """Octave-band levels (dB) of the linear response, read where the inverse is exact."""
    n = fast_fft_len(max(len(linear), sr))  # about 1 Hz per bin: the 125 Hz band gets ~50 bins
    power = np.abs(np.fft.rfft(linear, n)) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    low, high = exact
    levels = []
    for centre in BAND_CENTRES_HZ:
        lo = max(centre / math.sqrt(2.0), low)
        hi = min(centre * math.sqrt(2.0), high)
        inside = (freqs >= lo) & (freqs <= hi)
        levels.append(_db(float(np.mean(power[inside]))) if inside.any() else FLOOR_DB)
    return levels


def _judge(figures: Figures, baseline: Figures | None) -> tuple[str, list[str]]:
    """The verdict code and the reasons a technician reads."""
    detected = figures.snr_db >= DETECT_SNR_DB
    not_heard = f"Không nghe thấy tín hiệu thử: tỉ số tín hiệu/nhiễu chỉ {_vn(figures.snr_db)} dB"
    if baseline is None:
        if not detected:
            return "silent", [not_heard, "Chưa lưu mốc: cần một lần đo nghe được tín hiệu"]
        return "baseline", ["Chưa có mốc: kết quả lần đo này được lưu làm mốc"]
    reasons: list[str] = []
    level_change = figures.level_db - baseline.level_db
    noise_rise = figures.noise_floor_dbfs - baseline.noise_floor_dbfs
    if noise_rise >= NOISE_RISE_DB:
        reasons.append(
            f"Nền ồn {_vn(figures.noise_floor_dbfs)} dBFS, cao hơn mốc {_vn(noise_rise)} dB"
        )
    if not detected:
        reasons.append(not_heard)
    if detected and abs(level_change) >= LEVEL_NOTE_DB:
        word = "thấp" if level_change < 0 else "cao"
        reasons.append(f"Mức âm {word} hơn mốc {_vn(abs(level_change))} dB")
    distortion_rise = figures.distortion_pct - baseline.distortion_pct
    distorted = (
        figures.snr_db >= DISTORTION_SNR_DB
        and distortion_rise >= DISTORTION_RISE_PCT
        and figures.distortion_pct >= DISTORTION_MIN_PCT
    )
    if distorted:
        reasons.append(
            f"Độ méo {_vn(figures.distortion_pct)}% (mốc {_vn(baseline.distortion_pct)}%)"
        )
    changes = {
        hz: now - then
        for hz, now, then in zip(BAND_CENTRES_HZ, figures.bands_db, baseline.bands_db, strict=True)
    }
    reference = float(np.median([changes[hz] for hz in _LOW_MID_BANDS]))
    lost = [hz for hz in _HIGH_BANDS if changes[hz] - reference <= -HIGH_LOSS_DB]
    if detected:
        reasons += [f"Dải {_band_name(hz)} giảm {_vn(-changes[hz])} dB so với mốc" for hz in lost]
    if noise_rise >= NOISE_RISE_DB:
        return "noisy", reasons
    if not detected or level_change <= -SILENT_DROP_DB:
        return "silent", reasons
    if distorted:
        return "distorted", reasons
    if lost:
        return "high_loss", reasons
    if level_change <= -LEVEL_LOW_DB:
        return "level_low", reasons
    return "ok", reasons


def _result(
    verdict: str,
    figures: Figures | None,
    baseline: Figures | None,
    reasons: list[str],
    started: float,
) -> Result:
    change = None
    if figures is not None and baseline is not None:
        change = _tidy(figures.level_db - baseline.level_db, 2)
    return Result(
        verdict=verdict,
        vietnamese=VIETNAMESE[verdict],
        figures=figures,
        level_vs_baseline_db=change,
        reasons=tuple(reasons),
        analysis_ms=round((time.perf_counter() - started) * 1000.0, 2),
    )


def _band_name(hz: int) -> str:
    return f"{hz // 1000} kHz" if hz >= 1000 else f"{hz} Hz"


def _vn(value: float) -> str:
    """A number as a Vietnamese reader writes it: one decimal after a comma, none if whole."""
    text = f"{value:.1f}".replace(".", ",")
    return text[:-2] if text.endswith(",0") else text


def _tidy(value: float, digits: int) -> float:
    """Rounded, and never -0.0 (which reads oddly in a report)."""
    return round(value, digits) + 0.0


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"figures: {name} must be a finite number, got {value!r}")
    return float(value)


def _db(power: float) -> float:
    return max(10.0 * math.log10(power), FLOOR_DB) if power > 0 else FLOOR_DB


def _dbfs(rms: float) -> float:
    return max(20.0 * math.log10(rms), FLOOR_DB) if rms > 0 else FLOOR_DB
