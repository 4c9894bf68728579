"""Which audio sink an agent plays into: a recording file sink (--sim), ALSA or raw PCM.

The `audio_output` setting overrides the profile: `sim` (the recorder), `alsa:<device>`, or
`raw:<path>` (s16le mono 48 kHz written as the sample clock plays it; the path may be a FIFO
another process reads, e.g. to measure from outside).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from audio.clock import Clock, coarse
from audio.sinks import AlsaSink, AudioSink, ClockedFileSink, RawSink
from firmware_profiles import FirmwareProfile

SIM_DIR = "sim"
SIM_WAV = "output.wav"
SIM_TIMING = "plays.jsonl"
# A raw sink wakes once per 40 ms block, the writer and the device together (measured: each
# wake-up of the process costs more than the work in it; 20 ms blocks cost ~25 % more CPU).
# Writers write whole frames (20 ms; live: 20 or 40 ms) and top up at block ends, so the
# buffer holds a block to play, a block to write and (20 ms frames) a frame of margin:
# never less than 20 ms queued. The jitter buffer is asked for audio up to 80 ms ahead, so
# raw outputs need a playout delay above that plus the sender's lead (60 ms with 40 ms
# frames) and the network's transit.
RAW_FRAME_FRAMES = 960
RAW_BLOCK_FRAMES = 2 * RAW_FRAME_FRAMES
RAW_BUFFER_FRAMES = 2 * RAW_BLOCK_FRAMES


class OutputError(Exception):
    """The profile does not say where audio goes."""


def parse_output(value: str) -> tuple[str, str]:
    """("sim", ""), ("alsa", device) or ("raw", path) from an audio_output setting."""
    kind, _, target = value.partition(":")
    if value == "sim":
        return "sim", ""
    if kind in ("alsa", "raw") and target:
        return kind, target
    raise OutputError(f"audio output {value!r} is not one of 'sim', 'alsa:<device>', 'raw:<path>'")


def make_sink_factory(
    *,
    profile: FirmwareProfile,
    data_dir: Path,
    sim: bool,
    clock: Clock,
    output: str | None = None,
) -> Callable[[], AudioSink]:
    """A function opening the agent's sink: `output` if set, else the recorder or ALSA."""
    audio = profile.audio
    latency_s = audio.output_latency_ms / 1000
    clock = coarse(clock)  # a sink's timing is its sample clock, not its wake-ups
    kind, target = parse_output(output) if output else ("", "")
    if kind == "raw":

        def raw_sink() -> AudioSink:
            # Samples are handed on as they play whatever the buffer (see RAW_BLOCK_FRAMES).
            return RawSink(
                Path(target),
                clock,
                buffer_frames=max(audio.buffer_frames, RAW_BUFFER_FRAMES),
                period_frames=max(audio.period_frames, RAW_FRAME_FRAMES),
                hand_on_frames=RAW_BLOCK_FRAMES,
                output_latency_s=latency_s,
            )

        return raw_sink
    if kind == "sim" or (not kind and (sim or profile.simulated)):
        out = data_dir / SIM_DIR

        def file_sink() -> AudioSink:
            out.mkdir(parents=True, exist_ok=True)
            # Room is awaited a whole 20 ms frame at a time (players and the live receiver
            # write 20 ms frames): one wake-up per frame, not two (measured: a wake-up costs
            # more than the work in it); the profile's buffer still holds a frame of margin.
            return ClockedFileSink(
                out / SIM_WAV,
                out / SIM_TIMING,
                clock,
                buffer_frames=audio.buffer_frames,
                period_frames=min(audio.buffer_frames, max(audio.period_frames, RAW_FRAME_FRAMES)),
                output_latency_s=latency_s,
            )

        return file_sink
    device = target or audio.alsa_device
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
