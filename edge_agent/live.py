"""Live receiver: join a live session, buffer its frames, play them in sync, leave, prove it.

A `live_join` command names one topic (the lowest targeted zone of this device, so frames
never arrive twice). Frames are pushed into a JitterBuffer on arrival; a playout task writes
`pull(now=server_now(sink.next_sample_monotonic()))` to the sink, so every device hears frame
n at its capture time + playout delay on the server clock (the buffer subtracts the
profile's output latency). At most one session plays: a new one preempts the current one
only if it is of higher priority, or both are emergencies (the later wins, the earlier is
told why with a second ack `ok=false`); otherwise the new one is refused with a reason.
The scheduled player yields the sound card through `PlaybackArbiter`.

A join is acknowledged once the receiver can decode (the codec loads with the first session,
a second or more on a Pi): the server counts a device as listening, and a clip waits for it,
only when its first frame will be heard. Frames are buffered from the join on.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from audio.clock import Clock
from audio.jitter import Arrival, JitterBuffer
from audio.sinks import AudioSink, SinkError
from protocol import Ack, LiveJoin, LiveLeave, LivePriority, TopicError, parse_live_topic
from protocol.liveframe import FrameError, decode_frame

if TYPE_CHECKING:  # numpy loads with the first live session (or item), not at idle
    from audio.pcm import Pcm

log = logging.getLogger(__name__)

RANK: dict[str, int] = {"normal": 0, "priority": 1, "emergency": 2}
RECENT_IDS = 256


class Grant(NamedTuple):
    """The player's answer to a live request."""

    granted: bool
    reason: str = ""


class PlaybackArbiter(Protocol):
    """Implemented by the scheduled player: gives the sound card to live audio, or refuses."""

    async def request_live(self, *, session_id: str, priority: LivePriority) -> Grant:
        """Stop (preempt or pause) scheduled playback for live audio, or say why not."""
        ...

    async def quiet(self) -> None:
        """Return once scheduled playback has stopped writing to the sound card."""
        ...

    async def release(self, *, session_id: str) -> None:
        """Live audio is over: scheduled playback may resume."""
        ...


class AlwaysGrant:
    """Default arbiter when nothing else plays: every request is granted (kept for tests)."""

    def __init__(self) -> None:
        self.holders: list[str] = []

    async def request_live(self, *, session_id: str, priority: LivePriority) -> Grant:
        """Grant and remember the holder."""
        self.holders.append(session_id)
        return Grant(True)

    async def quiet(self) -> None:
        """Nothing else ever writes."""

    async def release(self, *, session_id: str) -> None:
        """Forget the holder."""
        with contextlib.suppress(ValueError):
            self.holders.remove(session_id)


class LiveLink(Protocol):
    """The part of MqttLink the receiver uses."""

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now and after every reconnect."""
        ...

    def unsubscribe(self, topic_filter: str) -> None:
        """Stop reading a filter."""
        ...


@dataclass
class LiveProof:
    """What one session did on this device (server-clock seconds)."""

    session_id: str
    priority: str
    joined_at: float
    first_frame_at: float | None = None
    left_at: float | None = None
    outcome: str = "played"
    reason: str = ""
    played: int = 0
    concealed: int = 0
    late: int = 0
    dropped: int = 0
    output_gaps: int = 0  # the output ran dry mid-session: the device fell behind


@dataclass
class _Session:
    join: LiveJoin
    buffer: JitterBuffer
    proof: LiveProof
    last_arrival: float  # local monotonic
    last_due: float | None = None  # server time the last frame's slot ends at the sink
    latest_capture: float | None = None  # the newest frame received (server capture time)
    stop_reason: str | None = None
    end_reason: str | None = None  # why the session is ending, once the server said so
    restarts_from: int | None = None  # the output's restarts after the session's first write
    outcome: str = "played"
    task: asyncio.Task[None] | None = None
    pending: set[asyncio.TimerHandle] = field(default_factory=set)

    @property
    def frame_s(self) -> float:
        """Seconds of audio in one frame of this session (its join says 20 or 40 ms)."""
        return self.join.frame_ms / 1000


class LiveReceiver:
    """Plays live sessions on one device (see module doc)."""

    def __init__(
        self,
        *,
        link: LiveLink,
        clock: Clock,
        server_now: Callable[[float], float],
        open_sink: Callable[[], AudioSink],
        send_ack: Callable[[Ack], Awaitable[None]],
        arbiter: PlaybackArbiter | None = None,
        record: Callable[..., Awaitable[Any]] | None = None,
        set_volume: Callable[[int], Awaitable[None]] | None = None,
        emergency_volume: int | None = None,
        output_latency_s: float = 0.0,
        idle_timeout_s: float = 5.0,
        arrival_delay: Callable[[], float] | None = None,
        zones: Callable[[], Collection[int]] | None = None,
        on_sent: Callable[[float, float], None] | None = None,
        decoder_ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.link = link
        # (server send time, local arrival) of each joined frame that carries one (ClockSync).
        self.on_sent = on_sent
        self.clock = clock
        self.server_now = server_now  # local monotonic -> server Unix time (ClockSync)
        self._open_sink = open_sink
        self._send_ack = send_ack
        self.arbiter: PlaybackArbiter = arbiter or AlwaysGrant()
        self._record = record  # Outbox.record(item_id=, planned_start=, event=)
        self._set_volume = set_volume
        self.emergency_volume = emergency_volume
        self.output_latency_s = output_latency_s
        self.idle_timeout_s = idle_timeout_s
        self._arrival_delay = arrival_delay  # simulated network delay (bench, tests)
        self._zones = zones  # the zones of the desired state; None: no check (tests, bench)
        # Returns once frames can be decoded (default: the codec import _preload_opus began).
        self._decoder_ready = decoder_ready or _opus_loaded
        self.current: _Session | None = None
        self.proofs: list[LiveProof] = []
        self.rejected: dict[str, int] = {}
        self._recent: deque[str] = deque(maxlen=RECENT_IDS)
        self._subscribed: set[str] = set()
        self._stopping: set[asyncio.Task[None]] = set()
        # Every frame written, with its session id (silence.SilenceWatcher.live_frame).
        self.on_frame: Callable[[str, Pcm], None] | None = None

    # -- commands -------------------------------------------------------------------------

    async def handle(self, message: LiveJoin | LiveLeave) -> None:
        """Carry out a live_join or live_leave and acknowledge it."""
        if message.id in self._recent:
            return  # QoS 1 may deliver twice; the first copy was acknowledged
        self._recent.append(message.id)
        now = self.server_now(self.clock.monotonic())
        if message.expired(now):
            late = now - message.expires_at
            await self._ack(message.id, False, f"not carried out: expired {late:.1f} s ago")
            return
        if isinstance(message, LiveLeave):
            await self._leave(message)
        else:
            await self._join(message)

    async def _join(self, join: LiveJoin) -> None:
        try:
            zone_id, topic_session = parse_live_topic(join.topic)
        except TopicError as exc:
            await self._ack(join.id, False, str(exc))
            return
        refusal = self._misdirected(join, zone_id, topic_session)
        if refusal is not None:
            self._count("misdirected_join")
            log.warning("live %s: %s", join.session_id, refusal)
            await self._ack(join.id, False, refusal)
            return
        _preload_opus()
        cur = self.current
        if cur is not None and cur.join.session_id == join.session_id:
            await self._ack(join.id, True, "already playing this session")
            return
        if cur is not None:
            new, old = RANK[join.priority], RANK[cur.join.priority]
            if new < old or (new == old and join.priority != "emergency"):
                why = (
                    f"refused: live session {cur.join.session_id} ({cur.join.priority}) is playing"
                )
                await self._ack(join.id, False, why)
                return
        grant = await self.arbiter.request_live(session_id=join.session_id, priority=join.priority)
        if not grant.granted:
            await self._ack(join.id, False, f"refused by the player: {grant.reason}")
            return
        if cur is not None:
            await self._stop(cur, f"superseded by live session {join.session_id}", "preempted")
        session = await self._start(join)
        await self._decoder_ready()  # frames buffer meanwhile; "listening" must mean it
        if session.stop_reason is not None:  # left, or preempted (then _finish said so)
            if session.outcome != "preempted":
                why = f"left before the audio started: {session.stop_reason}"
                await self._ack(join.id, False, why)
            return
        await self._ack(join.id, True, f"joined {join.topic}")

    def _misdirected(self, join: LiveJoin, zone_id: int, topic_session: str) -> str | None:
        """Why a join names a topic this device must not play, or None."""
        if topic_session != join.session_id:
            return f"refused: topic {join.topic} is not live session {join.session_id}'s"
        if self._zones is None:
            return None
        zones = sorted(self._zones())
        if zone_id not in zones:
            held = ", ".join(map(str, zones)) or "none"
            return f"refused: this device is not in zone {zone_id} (its zones: {held})"
        return None

    async def _leave(self, leave: LiveLeave) -> None:
        cur = self.current
        if cur is None or cur.join.session_id != leave.session_id:
            await self._ack(leave.id, True, "not playing this session")
            return
        reason = leave.reason or "the server ended the session"
        if cur.latest_capture is not None and cur.task is not None:
            # Frames already received are still to be heard: play them out, then leave.
            delay = cur.join.playout_delay_ms / 1000
            due = cur.latest_capture + delay - self.output_latency_s + cur.frame_s
            cur.last_due = due if cur.last_due is None else min(cur.last_due, due)
            cur.end_reason = reason
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(cur.task), delay + 2.0)
        await self._stop(cur, reason, "played")
        await self._ack(leave.id, True, "left")

    async def _ack(self, command_id: str, ok: bool, detail: str) -> None:
        await self._send_ack(Ack(id=command_id, ok=ok, detail=detail[:500]))

    # -- frames ---------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> bool:
        """Take a frame on arrival (call from the MQTT callback); False if not a live topic."""
        if "/live/" not in topic:
            return False
        arrived = self.clock.monotonic()
        cur = self.current
        if cur is None or topic != cur.join.topic:
            self._count("not_joined")  # a frame after leaving, or another zone's copy
            return True
        try:
            frame = decode_frame(payload)
        except FrameError as exc:
            self._count("bad_frame")
            log.warning("live %s: dropped a frame: %s", cur.join.session_id, exc)
            return True
        if frame.sent_us is not None and self.on_sent is not None:
            self.on_sent(frame.sent_us / 1_000_000, arrived)
        if self._arrival_delay is None:
            self._push(cur, frame.seq, frame.capture_time, frame.payload, frame.last)
            return True
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def later() -> None:
            assert handle is not None
            cur.pending.discard(handle)
            self._push(cur, frame.seq, frame.capture_time, frame.payload, frame.last)

        handle = loop.call_later(max(0.0, self._arrival_delay()), later)
        cur.pending.add(handle)
        return True

    def _push(self, s: _Session, seq: int, capture: float, payload: bytes, last: bool) -> None:
        if s is not self.current or s.stop_reason is not None:
            return
        mono = self.clock.monotonic()
        result = s.buffer.push(seq, capture, payload, now=self.server_now(mono))
        if result is Arrival.FUTURE:
            self._count("future_frame")
            log.warning(
                "live %s: ignored frame %d, absurdly far from the stream", s.join.session_id, seq
            )
            return
        s.last_arrival = mono
        if s.latest_capture is None or capture > s.latest_capture:
            s.latest_capture = capture
        if last:
            delay = s.join.playout_delay_ms / 1000
            s.last_due = capture + delay - self.output_latency_s + s.frame_s

    def _count(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    # -- playout --------------------------------------------------------------------------

    async def _start(self, join: LiveJoin) -> _Session:
        frame_samples = join.sample_rate * join.frame_ms // 1000
        decoder = _LazyOpus(frame_samples)
        buffer = JitterBuffer(
            decode=decoder.decode,
            frame_samples=frame_samples,
            playout_delay_s=join.playout_delay_ms / 1000,
            output_latency_s=self.output_latency_s,
        )
        joined = self.server_now(self.clock.monotonic())
        proof = LiveProof(session_id=join.session_id, priority=join.priority, joined_at=joined)
        s = _Session(join=join, buffer=buffer, proof=proof, last_arrival=self.clock.monotonic())
        self.current = s
        if join.topic not in self._subscribed:
            self._subscribed.add(join.topic)
            self.link.subscribe(join.topic, 0)
        s.task = asyncio.create_task(self._play(s), name=f"live-{join.session_id}")
        return s

    async def _play(self, s: _Session) -> None:
        sink: AudioSink | None = None
        try:
            volume = s.join.volume
            if s.join.priority == "emergency" and self.emergency_volume is not None:
                volume = self.emergency_volume  # the profile's emergency level, always
            if volume is not None and self._set_volume is not None:
                await self._set_volume(volume)
            await self.arbiter.quiet()  # the scheduled player's last frame is queued
            await self._decoder_ready()  # the first pull needs numpy: not imported on the loop
            sink = self._open_sink()
            await sink.start()
            await self._feed(s, sink)
        except SinkError as exc:
            s.stop_reason, s.outcome = f"audio output failed: {exc}", "failed"
            log.error("live %s: %s", s.join.session_id, exc)
        finally:
            if sink is not None:
                with contextlib.suppress(SinkError):
                    if s.restarts_from is not None:
                        s.proof.output_gaps = sink.restarts - s.restarts_from
                    await sink.close(drain=s.outcome == "played")
            await self._finish(s)

    async def _feed(self, s: _Session, sink: AudioSink) -> None:
        buffer = s.buffer
        while s.stop_reason is None:
            mono = sink.next_sample_monotonic()
            now = self.server_now(mono)
            if s.last_due is not None and now >= s.last_due:
                s.stop_reason = s.end_reason or "the session ended"
                break
            if self.clock.monotonic() - s.last_arrival > self.idle_timeout_s:
                s.stop_reason = f"no audio received for {self.idle_timeout_s:g} s"
                break
            before = buffer.stats.played
            pcm = buffer.pull(now=now)
            if s.proof.first_frame_at is None and buffer.stats.played > before:
                s.proof.first_frame_at = now + self.output_latency_s
            if self.on_frame is not None:
                self.on_frame(s.join.session_id, pcm)
            await sink.write(pcm)
            if s.restarts_from is None:  # the first write may have (re)started the device
                s.restarts_from = sink.restarts

    async def _stop(self, s: _Session, reason: str, outcome: str) -> None:
        """Stop a session and wait until its proof is recorded."""
        if s.stop_reason is None:
            s.stop_reason, s.outcome = reason, outcome
        if s.task is not None:
            # A sink write may wait up to a buffer's length: stop it now, not at its end.
            if outcome != "played":
                s.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await s.task

    async def _finish(self, s: _Session) -> None:
        for handle in s.pending:
            handle.cancel()
        if self.current is s:
            self.current = None
        if s.join.topic in self._subscribed:  # one subscription per session: drop it
            self._subscribed.discard(s.join.topic)
            self.link.unsubscribe(s.join.topic)
        await self.arbiter.release(session_id=s.join.session_id)
        stats, proof = s.buffer.stats, s.proof
        proof.left_at = self.server_now(self.clock.monotonic())
        proof.played, proof.concealed = stats.played, stats.concealed
        proof.late, proof.dropped = stats.late, stats.skipped + stats.dropped_future
        proof.reason = s.stop_reason or "stopped"
        proof.outcome = s.outcome if proof.played else "missed"
        if proof.output_gaps:
            log.warning(
                "live %s: the audio output ran dry %d times (gaps in the sound): this device "
                "could not keep up; check its CPU load and the playout delay",
                s.join.session_id,
                proof.output_gaps,
            )
        self.proofs.append(proof)
        if s.outcome == "preempted":
            await self._ack(s.join.id, False, f"left: {proof.reason}")
        if self._record is not None:
            event = live_event(proof)
            with contextlib.suppress(Exception):
                await self._record(
                    item_id=event["item_id"], planned_start=proof.joined_at, event=event
                )

    def preempt(self, session_id: str, reason: str) -> None:
        """A scheduled item outranks the live session: stop it (from a synchronous caller)."""
        cur = self.current
        if cur is not None and cur.join.session_id == session_id and cur.stop_reason is None:
            task = asyncio.get_running_loop().create_task(self._stop(cur, reason, "preempted"))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        """Stop whatever plays (the agent is shutting down)."""
        if self.current is not None:
            await self._stop(self.current, "the agent stopped", "preempted")


def live_event(proof: LiveProof) -> dict[str, Any]:
    """The proof-of-play event (a PlayEvent of kind "live", without its seq)."""
    counts = (
        f"frames played {proof.played}, concealed {proof.concealed}, late {proof.late}, "
        f"dropped {proof.dropped}"
    )
    if proof.output_gaps:
        counts += f", output gaps {proof.output_gaps}"
    return {
        "kind": "live",
        "item_id": f"live:{proof.session_id}",
        "priority": proof.priority,
        "planned_start": proof.joined_at,
        "actual_start": proof.first_frame_at,
        "ended_at": proof.left_at,
        "outcome": proof.outcome,
        "reason": f"{proof.reason}; {counts}"[:300],
        "session_id": proof.session_id,
        "frames_played": proof.played,
        "frames_concealed": proof.concealed,
        "frames_late": proof.late,
        "frames_dropped": proof.dropped,
    }


# PyAV and numpy (~20 MB resident each) load with the first live session, not at idle. The
# import starts in a thread when a join arrives, so neither the join (frames are buffered
# from the start) nor a playing programme waits for it; the playout task awaits it before
# its first pull, and the first decode, a playout delay later, uses it.
_OPUS_LOADING: set[asyncio.Future[Any]] = set()


def _preload_opus() -> None:
    if "audio.opus" in sys.modules or _OPUS_LOADING:
        return
    task = asyncio.ensure_future(asyncio.to_thread(importlib.import_module, "audio.opus"))
    _OPUS_LOADING.add(task)
    task.add_done_callback(_OPUS_LOADING.discard)


async def _opus_loaded() -> None:
    """Wait, without blocking the event loop, for an import _preload_opus started."""
    for task in list(_OPUS_LOADING):
        with contextlib.suppress(Exception):  # a failed import fails again at the first decode
            await asyncio.shield(task)


class _LazyOpus:
    """An OpusDecoder made on the first decode (see _preload_opus)."""

    def __init__(self, frame_samples: int) -> None:
        self._frame_samples = frame_samples
        self._decoder: Any = None

    def decode(self, packet: bytes | None) -> Any:
        if self._decoder is None:
            opus = importlib.import_module("audio.opus")
            self._decoder = opus.OpusDecoder(frame_samples=self._frame_samples)
        return self._decoder.decode(packet)
