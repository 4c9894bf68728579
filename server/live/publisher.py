"""Frames out: take a frame (20 or 40 ms) from the source on time, encode Opus, stamp, publish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from audio.clock import Clock, coarse
from audio.opus import OpusEncoder
from audio.pcm import FRAME_SAMPLES, SAMPLE_RATE, Pcm, silence
from protocol import LIVE_QOS, SPECS, Message, TopicKind, device_topic, encode
from protocol.liveframe import LiveFrame, encode_frame
from protocol.mqtt_client import Outgoing
from server.live.buffer import PcmQueue

log = logging.getLogger(__name__)

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE  # the default frame (scheduled relays keep it)
# Further behind than this (the server stalled) the publisher skips ahead instead of
# sending a burst of stale frames the devices would drop as late anyway.
MAX_BEHIND_S = 0.3
# libopus delays the signal by its 6.5 ms look-ahead (312 samples at 48 kHz; FFmpeg's
# initial_padding, which PyAV does not expose). Stamping each frame that much earlier makes
# the decoded sound, not the packet, land at capture time + playout delay.
OPUS_LOOKAHEAD_S = 312 / SAMPLE_RATE
# libopus' complexity 5 costs a third of its default 10's CPU (0.07 vs 0.21 ms per frame on
# the bench machine) for speech at 32 kbit/s that measures alike (tests/live/test_publisher_cpu.py).
OPUS_COMPLEXITY = 5


def frames_per_send(*, send_ms: int, frame_ms: int) -> int:
    """How many frames of `frame_ms` leave together for `send_ms` of audio (at least one)."""
    return max(1, send_ms // frame_ms)


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
        gate: Callable[[float, Pcm | None], bool] | None = None,
        frame_samples: int = FRAME_SAMPLES,
        first_audio_wait_s: float = 0.0,
        frames_per_send: int = 1,
    ) -> None:
        self.outlet = outlet
        # Frames leave in groups of this many, back to back, when the group's last one is
        # due: every device then wakes once a group instead of once a frame, most of a
        # receiver's CPU (docs/benchmarks.md, twelfth pass). The earlier frames of a group
        # wait for the last: (frames_per_send - 1) frames of the playout delay's margin.
        if frames_per_send < 1:
            raise ValueError("frames_per_send must be at least 1")
        self.frames_per_send = frames_per_send
        # A live source's frame timeline starts when its first audio is in hand (at most this
        # long after run()), so its first frame is taken at once, as old as the prefill. A
        # timeline already ticking took it at the next tick instead, up to a frame later: the
        # audio's age then varied by a frame from session to session, all of it latency the
        # playout delay had to absorb (at 200 ms with 40 ms frames: late frames on devices).
        self.first_audio_wait_s = first_audio_wait_s
        self._stopped = asyncio.Event()
        self.frame_samples = frame_samples
        self.frame_s = frame_samples / SAMPLE_RATE
        # Scheduled relays (server/relay/runner.py): given each frame's capture stamp and the
        # source's audio (None: it had none), says whether to publish it; None: always.
        self.gate = gate
        self.gated_frames = 0  # frames the gate held back
        self.queue = queue
        # Each frame's stamp comes from its sequence number, not from when it is sent, so a
        # wake-up a millisecond late costs nothing: no spinning for the last millisecond.
        self.clock = coarse(clock)
        self.server_time = server_time
        self.topics = topics
        self.encoder = OpusEncoder(
            bitrate=bitrate, complexity=OPUS_COMPLEXITY, frame_samples=frame_samples
        )
        self.frames_sent = 0
        self.silent_frames = 0  # frames the source had no audio for (silence was sent)
        self.skipped_frames = 0
        self.cpu_s = 0.0  # process time spent encoding and publishing
        self.started_at: float | None = None  # server time of frame 0's capture
        self._stop = False

    def stop(self) -> None:
        """End after the current frame; the next one sent carries the last-frame flag."""
        self._stop = True
        self._stopped.set()

    async def _await_first_audio(self) -> None:
        """Until a live queue first holds its prefill, stop(), or first_audio_wait_s."""
        waits = [
            asyncio.ensure_future(self.queue.wait_first_audio()),
            asyncio.ensure_future(self._stopped.wait()),
            asyncio.ensure_future(
                self.clock.sleep_until(self.clock.monotonic() + self.first_audio_wait_s)
            ),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting

    async def run(self) -> None:
        """Publish until stop() or the source is drained; the final frame is flagged last."""
        if self.queue.live and self.first_audio_wait_s > 0:
            await self._await_first_audio()
        t0_mono = self.clock.monotonic()
        t0_server = self.server_time()
        self.started_at = t0_server  # the first sample of the source was captured then
        seq = 0
        # How old a frame's audio is when taken (live sources; see PcmQueue): the stamps say
        # when it was captured, so the devices' playout delay includes the time it waited.
        # Measured by the queue when the audio first flows, and kept so (it drops a backlog
        # down to it, and refills to the prefill after running dry): a timeline that never
        # moves is one every device follows alike.
        queue, encoder = self.queue, self.encoder
        frame_s, frame_samples = self.frame_s, self.frame_samples
        stamp0 = t0_server - OPUS_LOOKAHEAD_S
        group = self.frames_per_send
        pending: list[tuple[int, float, bytes, bool]] = []  # (seq, stamp, payload, last)
        while True:
            deadline = t0_mono + seq * frame_s
            if not pending:  # a group's first frame: wait until its last one is due
                send_at = t0_mono + (seq - seq % group + group - 1) * frame_s
                await self.clock.sleep_until(send_at)
                behind = self.clock.monotonic() - send_at
                if behind > MAX_BEHIND_S:
                    skip = int(behind / frame_s)
                    self.skipped_frames += skip
                    seq += skip
                    log.warning(
                        "live publisher fell %.2f s behind; skipped %d frames", behind, skip
                    )
                    continue
            late = self.clock.monotonic() - deadline
            cpu0 = time.process_time()
            last = self._stop or queue.drained
            taken = queue.take(frame_samples, late_s=late)
            lead = queue.lead_s
            if lead is None:  # not flowing yet: a live queue's audio will be about this old
                lead = queue.prefill / SAMPLE_RATE if queue.live else 0.0
            stamp = stamp0 + seq * frame_s - lead
            gated = self.gate is not None and not self.gate(stamp, taken)
            if gated:
                self.gated_frames += 1
                last = last or self._stop  # the gate may ask for the end (a stretch's last frame)
            else:
                pcm = taken
                if pcm is None:
                    pcm = silence(frame_samples)
                    self.silent_frames += 1
                pending.append((seq, stamp, encoder.encode(pcm), last))
            # A group ends at its last slot even when the gate held that frame back, so the
            # next group's first frame waits for its own slot again.
            if last or seq % group == group - 1:
                self._send(pending)
                pending.clear()
            self.cpu_s += time.process_time() - cpu0
            seq += 1
            if last:
                return

    def _send(self, frames: list[tuple[int, float, bytes, bool]]) -> None:
        """Publish encoded frames (seq, stamp, payload, last) to every topic, back to back."""
        topics, outlet = self.topics(), self.outlet
        for seq, stamp, payload, last in frames:
            data = encode_frame(
                LiveFrame(
                    seq=seq,
                    capture_us=round(stamp * 1_000_000),
                    payload=payload,
                    last=last,
                    # Read last, just before the frame leaves: devices bound their clock
                    # offset with it (the server clock was at least this on arrival).
                    sent_us=round(self.server_time() * 1_000_000),
                )
            )
            # One encode per frame, whatever the number of zones.
            for topic in topics:
                outlet.publish(Outgoing(topic, data, LIVE_QOS, False))
            self.frames_sent += 1
