"""Opus packets for live audio: one packet per 20 ms frame of 48 kHz mono s16 (libopus via PyAV).

Loss concealment: PyAV cannot reach libopus' own packet-loss concealment (FFmpeg treats an
empty packet as end of stream, and its decoders expose no FEC/PLC option). `OpusDecoder`
therefore conceals a lost or unusable packet itself: it repeats the last good frame with a
falling gain (half per lost frame, a smooth ramp inside each frame) and goes silent after a
few losses, so a gap sounds like a short dip, never a click or a frozen buzz.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import av.error
import numpy as np

from audio.errors import AudioError
from audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm, as_pcm, clip_to_int16, fade_in, silence

DEFAULT_BITRATE = 32_000
# After this many consecutive losses the decoder outputs plain silence.
MAX_CONCEALED_FRAMES = 5
RECOVERY_FADE_SAMPLES = 120


class OpusError(AudioError):
    """Opus encoding could not be set up or a frame could not be encoded."""

    code = "opus"


class OpusEncoder:
    """Encode 20 ms frames into Opus packets, one packet per frame."""

    def __init__(
        self,
        *,
        bitrate: int = DEFAULT_BITRATE,
        frame_samples: int = FRAME_SAMPLES,
        application: str = "audio",
        complexity: int | None = None,
    ) -> None:
        """`complexity` 0-10 is libopus' CPU/quality trade (None: its default, 10)."""
        if frame_samples not in (120, 240, 480, 960, 1920, 2880):
            raise OpusError(f"Opus cannot use frames of {frame_samples} samples at 48 kHz.")
        self.frame_samples = frame_samples
        try:
            codec = av.CodecContext.create("libopus", "w")
            assert isinstance(codec, av.AudioCodecContext)
            codec.sample_rate = SAMPLE_RATE
            codec.layout = "mono"
            codec.format = "s16"
            codec.bit_rate = bitrate
            codec.time_base = Fraction(1, SAMPLE_RATE)
            options = {
                "frame_duration": str(frame_samples * 1000 / SAMPLE_RATE),
                "application": application,
            }
            if complexity is not None:
                options["compression_level"] = str(complexity)  # FFmpeg's name for it
            codec.options = options
            codec.open()
        except (av.error.FFmpegError, ValueError) as exc:
            raise OpusError("The Opus encoder could not be started.", detail=str(exc)) from exc
        self._codec = codec
        self._pts = 0

    def encode(self, pcm_frame: Pcm) -> bytes:
        """Return the Opus packet for exactly one frame of `frame_samples` samples."""
        pcm_frame = as_pcm(pcm_frame)
        if len(pcm_frame) != self.frame_samples:
            raise OpusError(
                f"An Opus frame must hold {self.frame_samples} samples, got {len(pcm_frame)}."
            )
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm_frame).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += self.frame_samples
        try:
            packets = self._codec.encode(frame)
        except av.error.FFmpegError as exc:
            raise OpusError("Opus could not encode the frame.", detail=str(exc)) from exc
        # libopus never holds frames back, so each frame in is one packet out.
        if len(packets) != 1:
            raise OpusError(
                "Opus did not produce exactly one packet for the frame.",
                detail=f"{len(packets)} packets",
            )
        return bytes(packets[0])


class OpusDecoder:
    """Decode Opus packets into 20 ms frames; `None` (a lost packet) or garbage is concealed."""

    def __init__(self, *, frame_samples: int = FRAME_SAMPLES) -> None:
        self.frame_samples = frame_samples
        self.decoded = 0
        self.concealed = 0
        self.corrupt = 0
        self._codec = self._open()
        self._last_good = silence(frame_samples)
        self._losses_in_a_row = 0

    def decode(self, packet: bytes | None) -> Pcm:
        """Return one frame: the packet's audio, or a concealment frame if it is lost or bad."""
        if packet is None or len(packet) == 0:
            return self._conceal()
        pcm = self._decode_packet(packet)
        if pcm is None:
            self.corrupt += 1
            return self._conceal()
        self.decoded += 1
        if self._losses_in_a_row:
            # The decoder did not hear the lost packets, so its first frame back may not join
            # the faded concealment smoothly: ramp it in over 2.5 ms instead of clicking.
            pcm = fade_in(pcm, RECOVERY_FADE_SAMPLES)
        self._losses_in_a_row = 0
        self._last_good = pcm
        return pcm

    def _decode_packet(self, packet: bytes) -> Pcm | None:
        """Decode one packet; None if it is not a valid frame of the expected length."""
        try:
            frames = self._codec.decode(av.Packet(packet))
        except (av.error.FFmpegError, ValueError):
            # A rejected packet can leave FFmpeg's decoder in an error state: start afresh.
            self._codec = self._open()
            return None
        chunks = [_mono_int16(frame) for frame in frames]
        # One frame per packet is the usual case: no copy.
        pcm = chunks[0] if len(chunks) == 1 else np.concatenate(chunks) if chunks else silence(0)
        # A packet of another duration (e.g. 2.5 or 60 ms) would break the 20 ms cadence.
        return pcm if len(pcm) == self.frame_samples else None

    def _conceal(self) -> Pcm:
        """Repeat the last good frame at a gain that halves with every loss in a row."""
        self.concealed += 1
        self._losses_in_a_row += 1
        if self._losses_in_a_row > MAX_CONCEALED_FRAMES:
            return silence(self.frame_samples)
        start_gain = 0.5 ** (self._losses_in_a_row - 1)
        end_gain = 0.0 if self._losses_in_a_row == MAX_CONCEALED_FRAMES else start_gain / 2
        ramp = np.linspace(start_gain, end_gain, self.frame_samples)
        return clip_to_int16(self._last_good.astype(np.float64) * ramp)

    @staticmethod
    def _open() -> av.AudioCodecContext:
        """A fresh libopus decoder for 48 kHz mono."""
        try:
            codec = av.CodecContext.create("libopus", "r")
            assert isinstance(codec, av.AudioCodecContext)
            codec.sample_rate = SAMPLE_RATE
            codec.layout = "mono"
            codec.open()
        except (av.error.FFmpegError, ValueError) as exc:
            raise OpusError("The Opus decoder could not be started.", detail=str(exc)) from exc
        return codec


def _mono_int16(frame: av.AudioFrame) -> Pcm:
    """Samples of a decoded frame as mono int16, whatever sample format the decoder chose."""
    if frame.format.name == "s16" and frame.layout.nb_channels == 1:
        # libopus's usual s16 mono: the frame's own buffer, no copy (the array keeps the
        # frame alive; each decode returns a new one). `to_ndarray` costs ~20x more.
        plane: Any = frame.planes[0]  # exports the buffer protocol (untyped in PyAV's stubs)
        return np.frombuffer(plane, dtype=np.int16, count=frame.samples)
    data = frame.to_ndarray()
    if data.dtype == np.int16 and data.shape[0] == 1:
        return np.asarray(data.reshape(-1), dtype=np.int16)
    if data.dtype.kind == "f":
        data = data * 32768.0
    mono = data.reshape(-1) if data.shape[0] == 1 else data.mean(axis=0)
    return clip_to_int16(mono.astype(np.float64))
