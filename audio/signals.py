"""Test signals for measuring latency and sync: noise markers in silence, found by correlation.

A marker is a short burst of seeded, band-limited noise. Its autocorrelation is one narrow
peak, so cross-correlating a recording against it finds each occurrence to a fraction of a
sample: the correlation peak is refined by parabolic interpolation, and because the marker's
band stops well below Nyquist the peak is smooth enough for that to be accurate to ~0.01 ms.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from audio.pcm import SAMPLE_RATE, Pcm, as_pcm, clip_to_int16, silence

DEFAULT_MARKER_S = 0.05
DEFAULT_BAND_HZ = (300.0, 6000.0)

Signal = NDArray[np.int16] | NDArray[np.floating]


def make_marker(
    *,
    duration_s: float = DEFAULT_MARKER_S,
    sample_rate: int = SAMPLE_RATE,
    seed: int = 1,
    band_hz: tuple[float, float] = DEFAULT_BAND_HZ,
    peak_dbfs: float = -6.0,
) -> Pcm:
    """A burst of seeded noise limited to `band_hz`, with 2 ms fades, peaking at `peak_dbfs`."""
    n = round(duration_s * sample_rate)
    if n < 16:
        raise ValueError("a marker needs at least 16 samples")
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spectrum[(freqs < band_hz[0]) | (freqs > band_hz[1])] = 0.0
    burst = np.fft.irfft(spectrum, n)
    fade = min(n // 4, round(0.002 * sample_rate))
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    burst[:fade] *= ramp
    burst[n - fade :] *= ramp[::-1]
    burst *= 10.0 ** (peak_dbfs / 20.0) * 32767.0 / np.max(np.abs(burst))
    return clip_to_int16(burst)


def marker_track(
    *,
    duration_s: float,
    marker_times_s: Sequence[float],
    marker: Pcm,
    sample_rate: int = SAMPLE_RATE,
) -> Pcm:
    """Silence of `duration_s` with `marker` starting at each time in `marker_times_s`."""
    track = silence(round(duration_s * sample_rate))
    for t in marker_times_s:
        start = round(t * sample_rate)
        if start < 0 or start + len(marker) > len(track):
            raise ValueError(f"a marker at {t} s does not fit in {duration_s} s")
        track[start : start + len(marker)] = marker
    return track


def delay_fractional(signal: Signal, delay_samples: float) -> NDArray[np.float64]:
    """Delay `signal` by a possibly fractional number of samples (band-limited, FFT phase shift)."""
    x = np.asarray(signal, dtype=np.float64)
    n = fast_fft_len(len(x) + int(np.ceil(abs(delay_samples))) + 1)
    spectrum = np.fft.rfft(x, n)
    spectrum *= np.exp(-2j * np.pi * np.fft.rfftfreq(n) * delay_samples)
    return np.fft.irfft(spectrum, n)[: len(x)]


def find_markers(
    recording: Signal,
    reference_marker: Pcm,
    sample_rate: int = SAMPLE_RATE,
    *,
    threshold: float = 0.5,
) -> list[float]:
    """Start offsets (in samples, sub-sample precise) of each occurrence of the marker.

    An occurrence counts when the normalised correlation exceeds `threshold` (0..1); peaks
    closer than one marker length are the same occurrence. `sample_rate` is only checked.
    """
    if sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    rec = np.asarray(recording, dtype=np.float64)
    ref = as_pcm(reference_marker).astype(np.float64)
    m = len(ref)
    if len(rec) < m:
        return []
    corr = _correlate_valid(rec, ref)
    # Normalise by the energy of the recording under the marker, so loudness does not matter.
    energy = np.concatenate([[0.0], np.cumsum(rec * rec)])
    ref_norm = float(np.sqrt(np.sum(ref * ref)))
    if ref_norm == 0.0:
        raise ValueError("the reference marker is silent")
    window = np.sqrt(np.maximum(energy[m:] - energy[:-m], 0.0)) * ref_norm
    # Near-silence (rounding dust, 80 dB below the marker) must not score as a perfect match.
    score = corr / np.maximum(window, 1e-4 * ref_norm * ref_norm)
    offsets: list[float] = []
    candidates = np.flatnonzero(score > threshold)
    i = 0
    while i < len(candidates):
        # Take the best peak in this cluster; the next cluster starts a marker length later.
        cluster_end = candidates[i] + m
        j = i
        while j < len(candidates) and candidates[j] < cluster_end:
            j += 1
        group = candidates[i:j]
        best = int(group[np.argmax(score[group])])
        offsets.append(best + _parabolic_offset(corr, best))
        i = j
    return offsets


def skew_between(
    rec_a: Signal,
    rec_b: Signal,
    *,
    sample_rate: int = SAMPLE_RATE,
    max_lag_s: float = 0.5,
) -> float:
    """Seconds by which `rec_b` lags `rec_a` (negative if it leads), by cross-correlation."""
    a = np.asarray(rec_a, dtype=np.float64)
    b = np.asarray(rec_b, dtype=np.float64)
    if not a.any() or not b.any():
        raise ValueError("cannot measure skew against a silent recording")
    n = fast_fft_len(len(a) + len(b))
    corr = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)
    max_lag = min(round(max_lag_s * sample_rate), n // 2 - 1)
    # Lags -max_lag..+max_lag, laid out contiguously so the peak can be interpolated.
    lags = np.concatenate([corr[n - max_lag :], corr[: max_lag + 1]])
    best = int(np.argmax(lags))
    return (best - max_lag + _parabolic_offset(lags, best)) / sample_rate


def _correlate_valid(rec: NDArray[np.float64], ref: NDArray[np.float64]) -> NDArray[np.float64]:
    """corr[k] = sum(rec[k:k+m] * ref) for every k where the marker fits, via FFT."""
    m = len(ref)
    n = fast_fft_len(len(rec) + m)
    full = np.fft.irfft(np.fft.rfft(rec, n) * np.conj(np.fft.rfft(ref, n)), n)
    return full[: len(rec) - m + 1]


def _parabolic_offset(values: NDArray[np.float64], peak: int) -> float:
    """Fractional position of the true maximum near `peak`, from a parabola through 3 points."""
    if peak <= 0 or peak >= len(values) - 1:
        return 0.0
    left, mid, right = values[peak - 1], values[peak], values[peak + 1]
    curvature = left - 2.0 * mid + right
    if curvature >= 0:
        return 0.0
    return float(0.5 * (left - right) / curvature)


def fast_fft_len(n: int) -> int:
    """The next length >= n whose only prime factors are 2, 3 and 5 (fast for the FFT)."""
    best = 1 << max(n - 1, 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best
