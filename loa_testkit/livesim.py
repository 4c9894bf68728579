"""Simulated live listeners and the analysis of what they recorded (tests and bench/live.py).

A SimListener is a LiveReceiver on a real MQTT link with a ClockedFileSink. Its `server_now`
is the machine's true wall-minus-monotonic offset (the injected truth: all listeners share
the machine clock, so a per-device clock offset only matters through the estimate's error,
which `clock_error_s` injects). `delay()` simulates the network: each frame is held in the
receiver before it is pushed to the jitter buffer.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audio.clock import Clock, SystemClock
from audio.pcm import SAMPLE_RATE, Pcm
from audio.signals import find_markers
from audio.sinks import AudioSink, ClockedFileSink
from edge_agent.live import LiveReceiver, PlaybackArbiter
from protocol import (
    SPECS,
    Ack,
    EventBatch,
    LiveJoin,
    LiveLeave,
    PlayEvent,
    TopicKind,
    decode,
    device_topic,
    encode,
)
from protocol.mqtt_client import MqttLink, Outgoing


@dataclass
class Recording:
    """Where a listener's sinks wrote (one pair per session it played)."""

    wav: Path
    timing: Path


@dataclass
class SimListener:
    """One simulated device that only does live audio."""

    uid: str
    out_dir: Path
    clock: Clock = field(default_factory=lambda: SystemClock(spin_s=0))
    clock_error_s: float = 0.0
    delay: Callable[[], float] | None = None
    arbiter: PlaybackArbiter | None = None
    emergency_volume: int | None = None
    idle_timeout_s: float = 5.0
    # The sink's device model is exact whatever its buffer; a bigger one only lets a busy
    # simulation process (hundreds of devices on one loop) wake less often.
    sink_period_frames: int = 480
    sink_buffer_frames: int = 4800
    recordings: list[Recording] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    volumes: list[int] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    link: MqttLink | None = None
    receiver: LiveReceiver | None = None

    def connect(self, *, host: str, port: int, password: str, username: str | None = None) -> None:
        """Create the link and the receiver (call on the running loop)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.link = MqttLink(
            client_id=f"{self.uid}-{random.getrandbits(24):x}" if username else self.uid,
            host=host,
            port=port,
            username=username or self.uid,
            password=password,
            on_message=self._on_message,
            keepalive=10,
            min_backoff=0.1,
            max_backoff=0.5,
        )
        self.link.subscribe(device_topic(self.uid, TopicKind.COMMAND), 1)
        truth = self.clock.time() - self.clock.monotonic()
        self.receiver = LiveReceiver(
            link=self.link,
            clock=self.clock,
            server_now=lambda mono: mono + truth + self.clock_error_s,
            open_sink=self._open_sink,
            send_ack=self._send_ack,
            arbiter=self.arbiter,
            record=self._record,
            set_volume=self._set_volume,
            emergency_volume=self.emergency_volume,
            idle_timeout_s=self.idle_timeout_s,
            arrival_delay=self.delay,
        )

    def _open_sink(self) -> AudioSink:
        n = len(self.recordings) + 1
        rec = Recording(self.out_dir / f"live-{n}.wav", self.out_dir / f"live-{n}.jsonl")
        self.recordings.append(rec)
        return ClockedFileSink(
            rec.wav,
            rec.timing,
            self.clock,
            period_frames=self.sink_period_frames,
            buffer_frames=self.sink_buffer_frames,
        )

    async def _send_ack(self, ack: Ack) -> None:
        self.acks.append(ack)
        assert self.link is not None
        if self.link.is_connected:
            topic = device_topic(self.uid, TopicKind.ACK)
            self.link.publish(Outgoing(topic, encode(ack), SPECS[TopicKind.ACK].qos, False))

    async def _record(self, *, item_id: str, planned_start: float, event: dict[str, Any]) -> int:
        """Like the outbox: keep the event and send it to the server as a batch."""
        self.events.append(event)
        seq = len(self.events)
        assert self.link is not None
        if self.link.is_connected:
            batch = EventBatch(events=[PlayEvent.model_validate({**event, "seq": seq})])
            topic = device_topic(self.uid, TopicKind.EVENTS)
            self.link.publish(Outgoing(topic, encode(batch), 1, False))
        return seq

    async def _set_volume(self, volume: int) -> None:
        self.volumes.append(volume)

    def _on_message(self, topic: str, payload: bytes) -> None:
        assert self.receiver is not None
        if self.receiver.on_message(topic, payload):
            return
        message = decode(TopicKind.COMMAND, payload)
        if isinstance(message, LiveJoin | LiveLeave):
            asyncio.get_running_loop().create_task(self.receiver.handle(message))


def load_recording(rec: Recording) -> tuple[Pcm, list[dict[str, Any]]]:
    """Samples and timing lines of one ClockedFileSink recording."""
    data = rec.wav.read_bytes()[44:]
    pcm = np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2").astype(np.int16)
    lines = [json.loads(x) for x in rec.timing.read_text().splitlines() if x.strip()]
    return pcm, lines


def heard_times(rec: Recording, marker: Pcm) -> tuple[list[float], int]:
    """Wall-clock instants each marker was heard, and the number of underruns (extra segments)."""
    pcm, lines = load_recording(rec)
    segments = [(x["sample_offset"], x["start_wall"]) for x in lines if x["event"] == "segment"]
    out: list[float] = []
    for pos in find_markers(pcm, marker):
        offset, start = max((s for s in segments if s[0] <= pos), key=lambda s: s[0])
        out.append(start + (pos - offset) / SAMPLE_RATE)
    return out, max(0, len(segments) - 1)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of values."""
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def skews(per_device: list[list[float]]) -> list[float]:
    """For each marker heard by every device: max - min heard instant (seconds)."""
    count = min(len(h) for h in per_device)
    return [max(h[i] for h in per_device) - min(h[i] for h in per_device) for i in range(count)]


def summary_ms(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds, rounded."""
    if not values:
        return {}
    ms = [v * 1000 for v in values]
    return {
        "p50": round(statistics.median(ms), 3),
        "p95": round(percentile(ms, 95), 3),
        "p99": round(percentile(ms, 99), 3),
        "max": round(max(ms), 3),
    }
