"""Which audio sink an agent plays into: a recording file sink (--sim) or ALSA."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from audio.clock import Clock
from audio.sinks import AlsaSink, AudioSink, ClockedFileSink
from firmware_profiles import FirmwareProfile

SIM_DIR = "sim"
SIM_WAV = "output.wav"
SIM_TIMING = "plays.jsonl"


class OutputError(Exception):
    """The profile does not say where audio goes."""


def make_sink_factory(
    *, profile: FirmwareProfile, data_dir: Path, sim: bool, clock: Clock
) -> Callable[[], AudioSink]:
    """A function opening the agent's sink: ClockedFileSink under data_dir/sim, else ALSA."""
    audio = profile.audio
    latency_s = audio.output_latency_ms / 1000
    if sim or profile.simulated:
        out = data_dir / SIM_DIR

        def file_sink() -> AudioSink:
            out.mkdir(parents=True, exist_ok=True)
            return ClockedFileSink(
                out / SIM_WAV,
                out / SIM_TIMING,
                clock,
                buffer_frames=audio.buffer_frames,
                period_frames=audio.period_frames,
                output_latency_s=latency_s,
            )

        return file_sink
    device = audio.alsa_device
    if device is None:
        raise OutputError(f"profile {profile.name} has no audio.alsa_device to play into")

    def alsa_sink() -> AudioSink:
        return AlsaSink(
            device,
            period_frames=audio.period_frames,
            buffer_frames=audio.buffer_frames,
            output_latency_s=latency_s,
            clock=clock,
        )

    return alsa_sink


def sim_timing_path(data_dir: Path) -> Path:
    """Where --sim writes the sink's JSON timing lines."""
    return data_dir / SIM_DIR / SIM_TIMING
