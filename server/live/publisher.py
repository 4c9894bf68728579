"""Frames out: take 20 ms from the source every 20 ms, encode Opus, stamp, publish at QoS 0."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from audio.clock import Clock
from audio.opus import OpusEncoder
from audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, silence
from protocol import LIVE_QOS, SPECS, Message, TopicKind, device_topic, encode
from protocol.liveframe import LiveFrame, encode_frame
from protocol.mqtt_client import Outgoing
from server.live.buffer import PcmQueue

log = logging.getLogger(__name__)

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
# Further behind than this (the server stalled) the publisher skips ahead instead of
# sending a burst of stale frames the devices would drop as late anyway.
MAX_BEHIND_S = 0.3
# libopus delays the signal by its 6.5 ms look-ahead (312 samples at 48 kHz; FFmpeg's
# initial_padding, which PyAV does not expose). Stamping each frame that much earlier makes
# the decoded sound, not the packet, land at capture time + playout delay.
OPUS_LOOKAHEAD_S = 312 / SAMPLE_RATE


class LiveOutlet(Protocol):
    """Where the service publishes (an MqttLink in production and tests)."""

    def publish(self, msg: Outgoing) -> int:
        """Queue one publish."""
        ...


def command_out(device_uid: str, message: Message) -> Outgoing:
    """A control message on a device's command topic (QoS 1, not retained)."""
    spec = SPECS[TopicKind.COMMAND]
    return Outgoing(device_topic(device_uid, TopicKind.COMMAND), encode(message), spec.qos, False)


class FramePublisher:
    """The real-time loop of one session (the frame timeline is the capture clock)."""

    def __init__(
        self,
        *,
        outlet: LiveOutlet,
        queue: PcmQueue,
        clock: Clock,
        server_time: Callable[[], float] = time.time,
        topics: Callable[[], list[str]],
        bitrate: int = 32_000,
    ) -> None:
        self.outlet = outlet
        self.queue = queue
        self.clock = clock
        self.server_time = server_time
        self.topics = topics
        self.encoder = OpusEncoder(bitrate=bitrate)
        self.frames_sent = 0
        self.silent_frames = 0  # frames the source had no audio for (silence was sent)
        self.skipped_frames = 0
        self.cpu_s = 0.0  # process time spent encoding and publishing
        self.started_at: float | None = None  # server time of frame 0's capture
        self._stop = False

    def stop(self) -> None:
        """End after the current frame; the next one sent carries the last-frame flag."""
        self._stop = True

    async def run(self) -> None:
        """Publish until stop() or the source is drained; the final frame is flagged last."""
        t0_mono = self.clock.monotonic()
        t0_server = self.server_time()
        self.started_at = t0_server  # the first sample of the source was captured then
        seq = 0
        # How old a frame's audio is when taken (live sources; see PcmQueue): the stamps say
        # when it was captured, so the devices' playout delay includes the time it waited.
        # Measured once, when the audio first flows: the queue keeps it so (it refills to the
        # prefill after running dry and drops a backlog down to it), and a timeline that
        # never moves is one every device follows alike.
        lead = self.queue.prefill / SAMPLE_RATE if self.queue.live else 0.0
        measured = False
        while True:
            deadline = t0_mono + seq * FRAME_S
            await self.clock.sleep_until(deadline)
            behind = self.clock.monotonic() - deadline
            if behind > MAX_BEHIND_S:
                skip = int(behind / FRAME_S)
                self.skipped_frames += skip
                seq += skip
                log.warning("live publisher fell %.2f s behind; skipped %d frames", behind, skip)
                continue
            cpu0 = time.process_time()
            last = self._stop or self.queue.drained
            now = self.clock.monotonic()
            age = self.queue.age_s(now) - (now - deadline) if self.queue.live else 0.0
            pcm = self.queue.take(FRAME_SAMPLES)
            if pcm is None:
                pcm = silence(FRAME_SAMPLES)
                self.silent_frames += 1
            elif not measured:
                measured, lead = True, age
            frame = LiveFrame(
                seq=seq,
                capture_us=round((t0_server + seq * FRAME_S - lead - OPUS_LOOKAHEAD_S) * 1_000_000),
                payload=self.encoder.encode(pcm),
                last=last,
            )
            data = encode_frame(frame)
            for topic in self.topics():
                self.outlet.publish(Outgoing(topic, data, LIVE_QOS, False))
            self.frames_sent += 1
            self.cpu_s += time.process_time() - cpu0
            seq += 1
            if last:
                return
